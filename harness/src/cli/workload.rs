//! `bftbench workload`: see what the YCSB generators produce.

use anyhow::{bail, Context};
use bft_workloads::keys::KeyNamer;
use bft_workloads::{properties, Op, Workload};
use clap::{Args, Subcommand};
use std::collections::BTreeMap;
use std::io::{BufWriter, Write};

#[derive(Args, Debug)]
pub struct WorkloadArgs {
    #[command(subcommand)]
    pub command: WorkloadCommand,
}

#[derive(Subcommand, Debug)]
pub enum WorkloadCommand {
    /// Print key names for key numbers START … START+COUNT−1 (YCSB's hashed order).
    Keys {
        #[arg(long, default_value_t = 0)]
        start: u64,
        #[arg(long, default_value_t = 10)]
        count: u64,
        /// Ordered key names (insertorder=ordered) instead of hashed.
        #[arg(long)]
        ordered: bool,
        #[arg(long, default_value_t = 1)]
        zeropadding: usize,
    },
    /// Print the run-phase operations, one a line: `OP KEY` (SCAN adds its length).
    Trace(TraceArgs),
}

#[derive(Args, Debug)]
pub struct TraceArgs {
    /// A core workload (a … f) or a YCSB property file.
    #[arg(long, default_value = "a")]
    pub workload: String,
    /// Property override, `key=value` (repeatable).
    #[arg(short = 'p', value_name = "KEY=VALUE")]
    pub props: Vec<String>,
    #[arg(long, default_value_t = 1000)]
    pub ops: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Per-operation counts and the share of operations on the hottest 1% of keys, instead of the trace.
    #[arg(long)]
    pub summary: bool,
    /// Trace the load phase (the inserts) instead of the run phase.
    #[arg(long)]
    pub load: bool,
}

pub fn run(args: WorkloadArgs) -> anyhow::Result<i32> {
    match args.command {
        WorkloadCommand::Keys {
            start,
            count,
            ordered,
            zeropadding,
        } => keys(start, count, ordered, zeropadding),
        WorkloadCommand::Trace(t) => trace(t),
    }
}

fn keys(start: u64, count: u64, ordered: bool, zero_padding: usize) -> anyhow::Result<i32> {
    let Some(end) = start.checked_add(count) else {
        bail!("--start {start} --count {count}: the range overflows");
    };
    let namer = KeyNamer {
        hashed: !ordered,
        zero_padding,
    };
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut s = String::new();
    for k in start..end {
        s.clear();
        namer.write(k, &mut s);
        writeln!(out, "{s}")?;
    }
    out.flush()?;
    Ok(0)
}

/// Built-in names (a … f) or a file path.
pub fn load_properties(
    workload: &str,
    overrides: &[String],
) -> anyhow::Result<bft_workloads::Properties> {
    let builtin = workload.len() == 1 && "abcdefABCDEF".contains(workload);
    let props = if builtin {
        properties(workload, None, overrides)
    } else {
        let text = std::fs::read_to_string(workload)
            .with_context(|| format!("--workload {workload}: cannot read the property file"))?;
        properties(workload, Some(&text), overrides)
    };
    Ok(props?)
}

fn line(op: &Op) -> String {
    match op {
        Op::Scan { start, count, .. } => format!("SCAN {start} {count}"),
        _ => format!("{} {}", op.name(), op.key()),
    }
}

fn trace(t: TraceArgs) -> anyhow::Result<i32> {
    let props = load_properties(&t.workload, &t.props)?;
    let mut w = Workload::new(&props, t.seed)?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut per_key: BTreeMap<String, u64> = BTreeMap::new();
    for _ in 0..t.ops {
        let op = if t.load {
            match w.load_op() {
                Some(op) => op,
                None => break,
            }
        } else {
            let (op, insert) = w.run_op();
            if let Some(k) = insert {
                w.ack_insert(k)?; // no store here: every insert succeeds at once
            }
            op
        };
        if t.summary {
            *counts.entry(op.name()).or_default() += 1;
            *per_key.entry(op.key().to_string()).or_default() += 1;
        } else {
            writeln!(out, "{}", line(&op))?;
        }
    }
    if t.summary {
        summary(&mut out, &t, &w, &counts, per_key)?;
    }
    out.flush()?;
    Ok(0)
}

fn summary(
    out: &mut impl Write,
    t: &TraceArgs,
    w: &Workload,
    counts: &BTreeMap<&'static str, u64>,
    per_key: BTreeMap<String, u64>,
) -> anyhow::Result<()> {
    let total: u64 = counts.values().sum();
    writeln!(
        out,
        "workload {} seed {}: {total} operations",
        t.workload, t.seed
    )?;
    for name in ["READ", "UPDATE", "INSERT", "SCAN", "READ-MODIFY-WRITE"] {
        if let Some(c) = counts.get(name) {
            writeln!(
                out,
                "{name} {c} ({:.2}%)",
                100.0 * *c as f64 / total.max(1) as f64
            )?;
        }
    }
    let hot_keys = (w.settings.record_count / 100).max(1) as usize;
    let mut freq: Vec<u64> = per_key.into_values().collect();
    freq.sort_unstable_by(|a, b| b.cmp(a));
    let hot: u64 = freq.iter().take(hot_keys).sum();
    writeln!(
        out,
        "hottest 1% of keys ({hot_keys} of {}): {:.2}% of operations",
        w.settings.record_count,
        100.0 * hot as f64 / total.max(1) as f64
    )?;
    Ok(())
}
