//! The processes of one run, whatever starts them (a child process, `docker
//! run -i`, later `ssh`): each is reached through its control channel
//! (`crate::control`), asked for its figures at the edges of the measured
//! interval, and stopped when the fleet is dropped, whatever happened.

use crate::control::{ProcessStats, STATS_REQUEST};
use anyhow::{bail, Context};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// Time a process gets to stop after its stdin closes, before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Replica,
    KvServer,
    Client,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Replica, Role::KvServer, Role::Client];

    /// The role's name in result columns.
    pub fn name(self) -> &'static str {
        match self {
            Role::Replica => "replica",
            Role::KvServer => "kv_server",
            Role::Client => "client",
        }
    }
}

/// What the processes of one role used: CPU and bytes summed over them within
/// the measured interval; peak memory is the largest of theirs, over the run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RoleUsage {
    pub processes: usize,
    pub cpu_s: f64,
    pub peak_rss_kb: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

/// Per-process figures at one instant, the client (this process) included.
pub type Sample = Vec<(Role, ProcessStats)>;

/// Usage per role between two samples taken of the same processes.
pub fn usage_between(before: &Sample, after: &Sample) -> Vec<(Role, RoleUsage)> {
    Role::ALL
        .iter()
        .filter_map(|&role| {
            let pairs: Vec<_> = before
                .iter()
                .zip(after)
                .filter(|((r, _), _)| *r == role)
                .collect();
            if pairs.is_empty() {
                return None;
            }
            let mut u = RoleUsage {
                processes: pairs.len(),
                ..RoleUsage::default()
            };
            for ((_, b), (_, a)) in pairs {
                u.cpu_s += (a.cpu_s - b.cpu_s).max(0.0);
                u.peak_rss_kb = u.peak_rss_kb.max(a.peak_rss_kb);
                u.bytes_sent += a.bytes_written.saturating_sub(b.bytes_written);
                u.bytes_received += a.bytes_read.saturating_sub(b.bytes_read);
            }
            Some((role, u))
        })
        .collect()
}

struct Member {
    role: Role,
    label: String,
    log: std::path::PathBuf,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

/// The processes of one run; dropping it stops them all.
#[derive(Default)]
pub struct Fleet {
    members: Vec<Member>,
}

impl Fleet {
    /// Starts `cmd` (which must serve the control channel) as one member;
    /// its stderr goes to the file `log` (created). Returns the member's index.
    ///
    /// A `Client` member is the load generator on another host: it is not
    /// asked for stats but reports its own figures (see `super::wire`).
    pub fn spawn(
        &mut self,
        role: Role,
        label: &str,
        mut cmd: Command,
        log: &std::path::Path,
    ) -> anyhow::Result<usize> {
        let file = std::fs::File::create(log)
            .with_context(|| format!("{label}: creating {}", log.display()))?;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {label}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            bail!("{label}: no pipes to its control channel");
        };
        self.members.push(Member {
            role,
            label: label.to_string(),
            log: log.to_path_buf(),
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
        });
        Ok(self.members.len() - 1)
    }

    /// A member that has already exited, with its status and the last line
    /// of its log (a replica refusing its configuration, say): what to tell
    /// the user when the cluster does not answer.
    pub fn first_exit(&mut self) -> Option<String> {
        self.members.iter_mut().find_map(|m| {
            let status = m.child.try_wait().ok().flatten()?;
            let bytes = std::fs::read(&m.log).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            let last = text.lines().rev().find(|l| !l.trim().is_empty());
            Some(format!(
                "{} exited ({status}): {}",
                m.label,
                last.unwrap_or("(its log is empty)")
            ))
        })
    }

    /// The next line member `index` prints (without its newline), at most
    /// `max` bytes; an error if it exits first.
    pub fn read_line(&mut self, index: usize, max: usize) -> anyhow::Result<String> {
        let m = &mut self.members[index];
        let mut line = Vec::new();
        let n = (&mut m.stdout)
            .take(max as u64 + 1)
            .read_until(b'\n', &mut line)
            .with_context(|| format!("reading from {}", m.label))?;
        if n == 0 {
            bail!("{} exited", m.label);
        }
        if n > max {
            bail!("{} printed a line longer than {max} bytes", m.label);
        }
        let text = String::from_utf8(line).with_context(|| format!("{}'s output", m.label))?;
        Ok(text.trim_end().to_string())
    }

    /// Every sampled member's figures, then this process's as the client's
    /// unless the client is a member of its own.
    pub fn sample(&mut self) -> anyhow::Result<Sample> {
        let remote_client = self.members.iter().any(|m| m.role == Role::Client);
        for m in self.members.iter_mut().filter(|m| m.role != Role::Client) {
            let sent = m
                .stdin
                .as_mut()
                .map(|s| writeln!(s, "{STATS_REQUEST}").and_then(|_| s.flush()));
            if !matches!(sent, Some(Ok(()))) {
                bail!(
                    "{} no longer takes control requests (did it exit?)",
                    m.label
                );
            }
        }
        let mut out = Vec::with_capacity(self.members.len() + 1);
        for m in self.members.iter_mut().filter(|m| m.role != Role::Client) {
            let mut line = String::new();
            let n = m
                .stdout
                .read_line(&mut line)
                .with_context(|| format!("reading {}'s stats", m.label))?;
            if n == 0 {
                bail!("{} exited during the run", m.label);
            }
            let stats =
                ProcessStats::parse(line.trim()).with_context(|| format!("{}'s stats", m.label))?;
            out.push((m.role, stats));
        }
        if !remote_client {
            out.push((Role::Client, ProcessStats::of_self()));
        }
        Ok(out)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Closing stdin asks each process to stop (and log its totals); what
        // still runs after the grace period is killed.
        for m in &mut self.members {
            drop(m.stdin.take());
        }
        let deadline = Instant::now() + STOP_GRACE;
        for m in &mut self.members {
            while Instant::now() < deadline && matches!(m.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = m.child.kill();
            let _ = m.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(cpu_s: f64, rss: u64, read: u64, written: u64) -> ProcessStats {
        ProcessStats {
            cpu_s,
            peak_rss_kb: rss,
            bytes_read: read,
            bytes_written: written,
        }
    }

    #[test]
    fn usage_sums_deltas_per_role_and_takes_the_largest_peak() {
        let before = vec![
            (Role::Replica, stats(1.0, 100, 10, 20)),
            (Role::Replica, stats(2.0, 300, 0, 0)),
            (Role::Client, stats(5.0, 50, 0, 0)),
        ];
        let after = vec![
            (Role::Replica, stats(1.5, 200, 110, 220)),
            (Role::Replica, stats(3.0, 300, 5, 5)),
            (Role::Client, stats(5.25, 60, 7, 9)),
        ];
        let u = usage_between(&before, &after);
        assert_eq!(u.len(), 2, "no kv_server role without kv-server processes");
        let (role, r) = u[0];
        assert_eq!(role, Role::Replica);
        assert_eq!(r.processes, 2);
        assert!((r.cpu_s - 1.5).abs() < 1e-9);
        assert_eq!(r.peak_rss_kb, 300);
        assert_eq!((r.bytes_received, r.bytes_sent), (105, 205));
        assert_eq!(u[1].1.bytes_sent, 9);
    }
}
