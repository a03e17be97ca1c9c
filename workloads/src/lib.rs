//! `bft-workloads`: YCSB-exact workload generation and the key-value App.
//!
//! No I/O and no clock: property text comes in as strings, randomness from seeds.
//! Java YCSB's key names, Zipfian arithmetic and CoreWorkload semantics are
//! matched (see `../shared/design/YCSB.md`); its random stream is not.

pub mod generators;
pub mod keys;
pub mod kv;
pub mod op;
pub mod properties;
pub mod workload;

pub use op::Op;
pub use properties::Properties;
pub use workload::Workload;

/// Properties for a built-in workload (`a`…`f`) or a property file's text,
/// then `-p` overrides.
pub fn properties(
    name: &str,
    file_text: Option<&str>,
    overrides: &[String],
) -> Result<Properties, properties::PropertyError> {
    let mut p = Properties::new();
    match file_text {
        Some(text) => p.load(name, text)?,
        None => p.load(&format!("workload{name}"), properties::builtin(name)?)?,
    }
    for o in overrides {
        p.set_override(o)?;
    }
    Ok(p)
}
