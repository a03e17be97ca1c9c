//! Matrix files: named parameters with lists of values; their cartesian
//! product, minus `exclude` rules, is the set of cells a matrix runs.
//!
//! ```toml
//! name = "batching"
//! repetitions = 3
//! [params]
//! protocol = ["raft", "bft"]
//! batch = [1, 10, 100]
//! pipeline = [1, 4]
//! duration = "5s"            # a single value needs no list
//! "p.fieldlength" = [100]    # any YCSB property, as `p.<key>`
//! [[exclude]]
//! protocol = "raft"
//! pipeline = 4
//! ```

use crate::cli::replica::ProtocolArgs;
use crate::cli::shared::parse_duration;
use crate::deploy::RunSpec;
use crate::results::Params;
use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::path::Path;

/// Parameters a matrix may set, with their defaults ("" means unset).
const DEFAULTS: &[(&str, &str)] = &[
    ("backend", "local"),
    ("protocol", "bft"),
    ("replicas", ""), // bare 1, raft 3, bft 4
    ("workload", "a"),
    ("clients", "64"),
    ("target_ops_s", ""),
    ("auth", "mac"),
    ("replies", "digests"),
    ("storage", "memory"),
    ("batch", "1024"),
    ("pipeline", "4"),
    ("execution", "embedded"),
    ("io", "epoll"),
    ("verify_threads", ""),
    ("duration_s", "5"),
    ("warmup_s", "1"),
    ("faults", "none"),
];

/// Matrix-file spellings of some parameters.
const ALIASES: &[(&str, &str)] = &[
    ("duration", "duration_s"),
    ("warmup", "warmup_s"),
    ("target", "target_ops_s"),
    ("raft_storage", "storage"),
];

/// Deployment back ends a cell may name.
pub const BACKENDS: [&str; 4] = ["local", "docker", "ssh", "k8s"];

/// Cells at most (a typo like `clients = [1..100000]` should not run for a year).
pub const CELLS_MAX: usize = 10_000;
pub const REPETITIONS_MAX: u32 = 100;

#[derive(Debug, Clone)]
pub struct MatrixSpec {
    pub name: String,
    pub repetitions: u32,
    /// Each parameter with its values, in a fixed (sorted) order.
    pub axes: BTreeMap<String, Vec<String>>,
    pub excludes: Vec<BTreeMap<String, String>>,
}

fn scalar(key: &str, v: &toml::Value) -> anyhow::Result<String> {
    Ok(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        _ => bail!("`{key}`: expected a string, number or boolean, or a list of them"),
    })
}

fn canonical_key(key: &str) -> anyhow::Result<String> {
    let key = ALIASES
        .iter()
        .find(|(a, _)| *a == key)
        .map_or(key, |(_, k)| k);
    if let Some(prop) = key.strip_prefix("p.") {
        if !bft_workloads::properties::KNOWN_KEYS.contains(&prop) {
            bail!("`{key}`: `{prop}` is not a YCSB property this version knows");
        }
        return Ok(key.to_string());
    }
    if !DEFAULTS.iter().any(|(k, _)| *k == key) {
        let known: Vec<&str> = DEFAULTS.iter().map(|(k, _)| *k).collect();
        bail!(
            "unknown parameter `{key}` (known: {}, duration, warmup, target, p.<ycsb property>)",
            known.join(", ")
        );
    }
    Ok(key.to_string())
}

/// Normalises and checks one value, so a bad cell fails at `--dry-run`.
fn check_value(key: &str, v: &str) -> anyhow::Result<String> {
    let one_of = |allowed: &[&str], note: &str| -> anyhow::Result<String> {
        if allowed.contains(&v) {
            Ok(v.to_string())
        } else {
            bail!(
                "`{key} = {v}`: expected one of {}{note}",
                allowed.join(", ")
            )
        }
    };
    let number = |what: &str| -> anyhow::Result<String> {
        v.parse::<u64>()
            .map(|n| n.to_string())
            .with_context(|| format!("`{key} = {v}`: expected {what}"))
    };
    match key {
        "backend" => one_of(&BACKENDS, ""),
        "protocol" => one_of(&["bare", "raft", "bft"], ""),
        "auth" => one_of(&["mac", "ed25519"], ""),
        "replies" => one_of(&["digests", "full"], ""),
        "storage" => one_of(&["memory", "disk"], ""),
        "execution" => one_of(&["embedded", "remote"], ""),
        "io" => one_of(&["epoll", "uring"], ""),
        "faults" => one_of(&["none"], " (fault schedules are still to come)"),
        "replicas" | "clients" | "batch" | "pipeline" | "verify_threads" => {
            number("a whole number")
        }
        "target_ops_s" => v
            .parse::<f64>()
            .ok()
            .filter(|t| *t > 0.0)
            .map(|t| t.to_string())
            .with_context(|| format!("`{key} = {v}`: expected a positive rate")),
        "duration_s" | "warmup_s" => Ok(parse_duration(v)
            .with_context(|| format!("`{key}`"))?
            .as_secs_f64()
            .to_string()),
        _ => Ok(v.to_string()),
    }
}

fn values(key: &str, v: &toml::Value) -> anyhow::Result<Vec<String>> {
    let raw = match v {
        toml::Value::Array(a) if a.is_empty() => bail!("`{key}`: an empty list"),
        toml::Value::Array(a) => a.iter().map(|x| scalar(key, x)).collect::<Result<_, _>>()?,
        x => vec![scalar(key, x)?],
    };
    raw.iter().map(|x| check_value(key, x)).collect()
}

impl MatrixSpec {
    pub fn load(path: &Path) -> anyhow::Result<MatrixSpec> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read matrix file {}", path.display()))?;
        MatrixSpec::parse(&text).with_context(|| format!("matrix file {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<MatrixSpec> {
        let mut doc: toml::Table = toml::from_str(text)?;
        let name = match doc.remove("name") {
            Some(toml::Value::String(s)) if !s.is_empty() => s,
            None => "matrix".into(),
            Some(_) => bail!("`name`: expected a non-empty string"),
        };
        let repetitions = match doc.remove("repetitions") {
            None => 1,
            Some(toml::Value::Integer(r)) if (1..=REPETITIONS_MAX as i64).contains(&r) => r as u32,
            Some(_) => bail!("`repetitions`: expected 1 to {REPETITIONS_MAX}"),
        };
        let mut axes = BTreeMap::new();
        if let Some(params) = doc.remove("params") {
            let toml::Value::Table(params) = params else {
                bail!("`params`: expected a table");
            };
            for (k, v) in &params {
                let key = canonical_key(k)?;
                if axes.insert(key.clone(), values(&key, v)?).is_some() {
                    bail!("`{k}` is given twice (under two spellings)");
                }
            }
        }
        let mut excludes = Vec::new();
        if let Some(ex) = doc.remove("exclude") {
            let toml::Value::Array(rules) = ex else {
                bail!("`exclude`: expected [[exclude]] tables");
            };
            for rule in rules {
                let toml::Value::Table(t) = rule else {
                    bail!("`exclude`: expected [[exclude]] tables");
                };
                let mut r = BTreeMap::new();
                for (k, v) in &t {
                    let key = canonical_key(k)?;
                    r.insert(key.clone(), check_value(&key, &scalar(&key, v)?)?);
                }
                excludes.push(r);
            }
        }
        if let Some(k) = doc.keys().next() {
            bail!(
                "unknown top-level key `{k}` (expected name, repetitions, [params], [[exclude]])"
            );
        }
        let spec = MatrixSpec {
            name,
            repetitions,
            axes,
            excludes,
        };
        let n = spec.axes.values().map(Vec::len).product::<usize>();
        if n > CELLS_MAX {
            bail!("{n} cells before exclusions: at most {CELLS_MAX}");
        }
        Ok(spec)
    }

    /// The cells, in a stable order, each with every parameter filled in.
    /// Cells that normalise to the same parameters (bare ignores `replicas`)
    /// run once.
    /// Replaces one parameter's values (a command-line override such as
    /// `--backend ssh`), checked like the file's own.
    pub fn set_axis(&mut self, key: &str, values: &[&str]) -> anyhow::Result<()> {
        let key = canonical_key(key)?;
        let checked = values
            .iter()
            .map(|v| check_value(&key, v))
            .collect::<anyhow::Result<_>>()?;
        self.axes.insert(key, checked);
        Ok(())
    }

    pub fn cells(&self) -> Vec<Params> {
        let mut cells: Vec<Params> = vec![Params::new()];
        for (k, vs) in &self.axes {
            cells = cells
                .into_iter()
                .flat_map(|c| {
                    vs.iter().map(move |v| {
                        let mut c = c.clone();
                        c.insert(k.clone(), v.clone());
                        c
                    })
                })
                .collect();
        }
        let mut seen = std::collections::BTreeSet::new();
        cells
            .into_iter()
            .filter(|c| {
                !self
                    .excludes
                    .iter()
                    .any(|r| r.iter().all(|(k, v)| c.get(k) == Some(v)))
            })
            .map(complete)
            .filter(|c| seen.insert(cell_name(c)))
            .collect()
    }
}

/// Fills defaults and derived values: replicas per protocol, the `props` column.
fn complete(mut c: Params) -> Params {
    for (k, v) in DEFAULTS {
        c.entry(k.to_string()).or_insert_with(|| v.to_string());
    }
    let replicas = match (c["protocol"].as_str(), c["replicas"].as_str()) {
        ("bare", _) => "1",
        ("raft", "") => "3",
        ("bft", "") => "4",
        (_, r) => r,
    };
    c.insert("replicas".into(), replicas.to_string());
    let props: Vec<String> = c
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("p.").map(|p| format!("{p}={v}")))
        .collect();
    c.retain(|k, _| !k.starts_with("p."));
    c.insert("props".into(), props.join(";"));
    c
}

/// A cell's canonical name: every parameter, sorted.
pub fn cell_name(c: &Params) -> String {
    c.iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a cell asks the deployment to run.
pub fn run_spec(c: &Params, dir: &Path, keep: bool) -> anyhow::Result<RunSpec> {
    let get = |k: &str| c.get(k).map(String::as_str).unwrap_or("");
    let num = |k: &str| -> anyhow::Result<u64> {
        get(k)
            .parse()
            .with_context(|| format!("`{k}` = `{}`", get(k)))
    };
    let overrides: Vec<String> = get("props")
        .split(';')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let props = crate::cli::workload::load_properties(get("workload"), &overrides)?;
    let protocol_args = ProtocolArgs {
        batch: num("batch")? as usize,
        pipeline: num("pipeline")?,
        checkpoint_interval: 128,
        request_timeout_ms: 1000,
        verify_threads: match get("verify_threads") {
            "" => None,
            _ => Some(num("verify_threads")? as usize),
        },
        no_batch_verify: false,
        storage: get("storage").to_string(),
        raft_disk: false,
        raft_snapshot_every: bft_net::raft_engine::SNAPSHOT_EVERY,
        io: match get("io") {
            "" => "epoll".into(),
            io => io.into(),
        },
    };
    Ok(RunSpec {
        protocol: get("protocol").to_string(),
        n: num("replicas")? as usize,
        props,
        clients: num("clients")? as usize,
        target: get("target_ops_s").parse().ok(),
        signed: get("auth") == "ed25519",
        full_replies: get("replies") == "full",
        protocol_args,
        remote_execution: get("execution") == "remote",
        duration: parse_duration(get("duration_s"))?,
        warmup: parse_duration(get("warmup_s"))?,
        dir: dir.to_path_buf(),
        keep,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_minus_exclusions_with_defaults() {
        let spec = MatrixSpec::parse(
            r#"
name = "t"
repetitions = 2
[params]
protocol = ["bare", "raft", "bft"]
batch = [1, 100]
duration = "2s"
"p.fieldlength" = 100
[[exclude]]
protocol = "raft"
batch = 1
"#,
        )
        .expect("valid");
        assert_eq!(spec.repetitions, 2);
        let cells = spec.cells();
        // 3 × 2 = 6, minus raft/batch 1.
        assert_eq!(cells.len(), 5);
        let bare = &cells[0];
        assert_eq!(bare["protocol"], "bare");
        assert_eq!(bare["replicas"], "1");
        assert_eq!(bare["duration_s"], "2");
        assert_eq!(bare["props"], "fieldlength=100");
        assert!(cells.iter().all(|c| c["auth"] == "mac"));
        assert!(cells
            .iter()
            .any(|c| c["protocol"] == "raft" && c["replicas"] == "3"));
        assert!(!cells
            .iter()
            .any(|c| c["protocol"] == "raft" && c["batch"] == "1"));
        let spec = run_spec(&cells[0], Path::new("/tmp/x"), false).expect("spec");
        assert_eq!(spec.n, 1);
        assert_eq!(spec.duration.as_secs(), 2);
    }

    #[test]
    fn bare_ignores_replicas_and_runs_once() {
        let spec =
            MatrixSpec::parse("[params]\nprotocol = [\"bare\", \"bft\"]\nreplicas = [4, 7]\n")
                .expect("valid");
        let cells = spec.cells();
        assert_eq!(cells.len(), 3, "{cells:?}");
    }

    #[test]
    fn mistakes_are_named() {
        for (text, needle) in [
            (
                "[params]\nprotocl = [\"bft\"]",
                "unknown parameter `protocl`",
            ),
            (
                "[params]\nprotocol = [\"pbft\"]",
                "expected one of bare, raft, bft",
            ),
            ("[params]\nbatch = [\"ten\"]", "`batch = ten`"),
            (
                "[params]\nbackend = \"kind\"",
                "expected one of local, docker, ssh, k8s",
            ),
            ("[params]\n\"p.nosuch\" = 1", "not a YCSB property"),
            ("[params]\nbatch = []", "empty list"),
            ("repetitions = 0", "repetitions"),
            ("colour = 1", "unknown top-level key"),
        ] {
            let err = format!("{:#}", MatrixSpec::parse(text).expect_err(text));
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
