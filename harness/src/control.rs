//! The control channel between the harness and the processes it starts:
//! their standard input and output. A `stats` line in asks for one
//! [`ProcessStats`] line out; the end of input asks the process to stop.
//!
//! A pipe, `docker run -i` and `ssh` all carry it unchanged, so every back end
//! measures CPU, memory and traffic the same way: each process reports its own
//! (from /proc/self and its transport's byte counters), wherever it runs.

use anyhow::{bail, Context};
use bft_net::frame::{BYTES_READ, BYTES_WRITTEN};
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What one process has used since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProcessStats {
    /// User + system CPU time, seconds (10 ms resolution).
    pub cpu_s: f64,
    /// Peak resident memory (VmHWM), KiB.
    pub peak_rss_kb: u64,
    /// Bytes through its framed connections (length prefixes included).
    pub bytes_read: u64,
    pub bytes_written: u64,
}

/// The request line.
pub const STATS_REQUEST: &str = "stats";

impl ProcessStats {
    /// This process's own figures.
    pub fn of_self() -> ProcessStats {
        ProcessStats {
            cpu_s: cpu_seconds("self").unwrap_or(0.0),
            peak_rss_kb: peak_rss_kb("self").unwrap_or(0),
            bytes_read: BYTES_READ.load(Ordering::Relaxed),
            bytes_written: BYTES_WRITTEN.load(Ordering::Relaxed),
        }
    }

    pub fn to_line(&self) -> String {
        format!(
            "stats cpu_s={:.3} peak_rss_kb={} bytes_read={} bytes_written={}",
            self.cpu_s, self.peak_rss_kb, self.bytes_read, self.bytes_written
        )
    }

    /// Parses [`ProcessStats::to_line`]'s output; anything else is an error
    /// that quotes the line.
    pub fn parse(line: &str) -> anyhow::Result<ProcessStats> {
        let mut words = line.split_whitespace();
        if words.next() != Some("stats") {
            bail!("not a stats line: `{line}`");
        }
        let mut s = ProcessStats::default();
        let mut seen = 0;
        for w in words {
            let (k, v) = w
                .split_once('=')
                .with_context(|| format!("`{w}` in `{line}`"))?;
            let bad = || format!("`{w}` in stats line `{line}`");
            match k {
                "cpu_s" => s.cpu_s = v.parse().with_context(bad)?,
                "peak_rss_kb" => s.peak_rss_kb = v.parse().with_context(bad)?,
                "bytes_read" => s.bytes_read = v.parse().with_context(bad)?,
                "bytes_written" => s.bytes_written = v.parse().with_context(bad)?,
                _ => continue, // a newer process may report more
            }
            seen += 1;
        }
        if seen < 4 {
            bail!("stats line `{line}` lacks fields");
        }
        Ok(s)
    }
}

/// Serves the control channel on stdin/stdout if `enabled`; the returned flag
/// is set when stdin closes (how a harness ties its processes to its life).
pub fn serve(enabled: bool) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    if enabled {
        let s = stop.clone();
        std::thread::spawn(move || {
            let stdin = std::io::stdin();
            let mut line = String::new();
            loop {
                line.clear();
                match stdin.lock().read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if line.trim() == STATS_REQUEST => {
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "{}", ProcessStats::of_self().to_line());
                        let _ = out.flush();
                    }
                    Ok(_) => {}
                }
            }
            s.store(true, Ordering::Relaxed);
        });
    }
    stop
}

fn proc_file(pid: &str, name: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/{name}")).ok()
}

/// CPU seconds (user + system) a process has used, from /proc.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = proc_file(pid, "stat")?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

/// Peak resident set size in KiB, from /proc.
pub fn peak_rss_kb(pid: &str) -> Option<u64> {
    let status = proc_file(pid, "status")?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stats_line_round_trips_and_garbage_is_refused() {
        let s = ProcessStats::of_self();
        assert!(s.peak_rss_kb > 0, "this process has resident memory");
        let back = ProcessStats::parse(&s.to_line()).unwrap();
        assert_eq!(back.peak_rss_kb, s.peak_rss_kb);
        assert_eq!(back.bytes_written, s.bytes_written);
        assert!((back.cpu_s - s.cpu_s).abs() < 0.001);
        assert!(ProcessStats::parse("hello").is_err());
        assert!(ProcessStats::parse("stats cpu_s=1").is_err());
        assert!(
            ProcessStats::parse("stats cpu_s=x peak_rss_kb=1 bytes_read=1 bytes_written=1")
                .is_err()
        );
        let extra = "stats cpu_s=1 peak_rss_kb=2 bytes_read=3 bytes_written=4 later=5";
        assert_eq!(ProcessStats::parse(extra).unwrap().bytes_written, 4);
    }
}
