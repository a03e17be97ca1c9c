//! Helpers the load-running commands share: load options, durations, YCSB output.

use anyhow::{bail, Context};
use bft_core::client::ClientAuth;
use bft_net::client_loop::{LoadOptions, LoadReport};
use std::io::Write;
use std::time::Duration;

/// Load options from the flags `bench` and `client` share.
pub fn load_options(signed: bool, target: Option<f64>, full_replies: bool) -> LoadOptions {
    LoadOptions {
        auth: if signed {
            ClientAuth::Signature
        } else {
            ClientAuth::Macs
        },
        target,
        full_replies,
        ..LoadOptions::default()
    }
}

/// `10s`, `500ms`, `2m`, or plain seconds.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let v: f64 = num
        .parse()
        .with_context(|| format!("`{s}` is not a duration (like 10s, 500ms, 2m)"))?;
    let secs = match unit {
        "" | "s" => v,
        "ms" => v / 1e3,
        "m" => v * 60.0,
        _ => bail!("`{s}`: unknown unit `{unit}` (use ms, s or m)"),
    };
    if !(0.0..=86_400.0).contains(&secs) {
        bail!("`{s}` is out of range");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// YCSB's text output, which existing tooling parses; with `intended`, also
/// the `[Intended-OP]` blocks (latency from the scheduled start, open loop).
pub fn print_ycsb(out: &mut impl Write, r: &LoadReport, intended: bool) -> std::io::Result<()> {
    writeln!(out, "[OVERALL], RunTime(ms), {}", r.elapsed.as_millis())?;
    writeln!(out, "[OVERALL], Throughput(ops/sec), {}", r.throughput())?;
    let blocks = r.per_op.iter().map(|(n, h)| (n.to_string(), h));
    let intended_blocks = r
        .per_op_intended
        .iter()
        .filter(|_| intended)
        .map(|(n, h)| (format!("Intended-{n}"), h));
    for (name, h) in blocks.chain(intended_blocks) {
        writeln!(out, "[{name}], Operations, {}", h.len())?;
        writeln!(out, "[{name}], AverageLatency(us), {:.1}", h.mean())?;
        writeln!(out, "[{name}], MinLatency(us), {}", h.min())?;
        writeln!(out, "[{name}], MaxLatency(us), {}", h.max())?;
        writeln!(
            out,
            "[{name}], 50thPercentileLatency(us), {}",
            h.value_at_quantile(0.5)
        )?;
        writeln!(
            out,
            "[{name}], 95thPercentileLatency(us), {}",
            h.value_at_quantile(0.95)
        )?;
        writeln!(
            out,
            "[{name}], 99thPercentileLatency(us), {}",
            h.value_at_quantile(0.99)
        )?;
        writeln!(
            out,
            "[{name}], 99.9PercentileLatency(us), {}",
            h.value_at_quantile(0.999)
        )?;
        writeln!(out, "[{name}], Return=OK, {}", h.len())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_errors_say_why() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("3h")
            .unwrap_err()
            .to_string()
            .contains("unknown unit"));
        assert!(parse_duration("fast").is_err());
    }
}
