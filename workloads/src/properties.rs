//! YCSB property files (`key=value`, `#` or `!` comments) and `-p key=value`
//! overrides, with every value remembering where it came from, so an error can
//! name the file and line.

use std::collections::BTreeMap;
use std::fmt;
use thiserror::Error;

/// Where a property was set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    File { name: String, line: usize },
    Override,
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { name, line } => write!(f, "{name} line {line}"),
            Origin::Override => write!(f, "-p override"),
            Origin::Default => write!(f, "default"),
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PropertyError {
    #[error("{origin}: `{text}` is not a `key=value` line")]
    Malformed { origin: Origin, text: String },
    #[error("{origin}: unknown property `{key}`")]
    Unknown { origin: Origin, key: String },
    #[error("{origin}: {key} = `{value}`: {why}")]
    BadValue {
        origin: Origin,
        key: String,
        value: String,
        why: String,
    },
    #[error("no built-in workload `{0}` (expected a, b, c, d, e or f)")]
    UnknownWorkload(String),
}

/// Properties that shape the operation stream (CoreWorkload's) and the ones a
/// YCSB file may carry for the client and measurements, accepted as they are.
pub const KNOWN_KEYS: &[&str] = &[
    // CoreWorkload
    "recordcount",
    "operationcount",
    "insertstart",
    "insertcount",
    "fieldcount",
    "fieldlength",
    "minfieldlength",
    "fieldlengthdistribution",
    "fieldlengthhistogram",
    "fieldnameprefix",
    "table",
    "readallfields",
    "readallfieldsbyname",
    "writeallfields",
    "dataintegrity",
    "readproportion",
    "updateproportion",
    "insertproportion",
    "scanproportion",
    "readmodifywriteproportion",
    "requestdistribution",
    "zeropadding",
    "insertorder",
    "minscanlength",
    "maxscanlength",
    "scanlengthdistribution",
    "hotspotdatafraction",
    "hotspotopnfraction",
    "exponential.percentile",
    "exponential.frac",
    "core_workload_insertion_retry_limit",
    "core_workload_insertion_retry_interval",
    // Client and measurement settings: do not change the operation stream.
    "workload",
    "db",
    "exporter",
    "exportfile",
    "threadcount",
    "target",
    "maxexecutiontime",
    "dotransactions",
    "status.interval",
    "measurementtype",
    "measurement.interval",
    "measurement.trackjvm",
    "histogram.buckets",
    "hdrhistogram.percentiles",
    "hdrhistogram.fileoutput",
    "hdrhistogram.output.path",
    "timeseries.granularity",
];

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Properties {
    values: BTreeMap<String, (String, Origin)>,
}

/// The six core workloads, with YCSB's property values.
pub fn builtin(name: &str) -> Result<&'static str, PropertyError> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "a" => WORKLOAD_A,
        "b" => WORKLOAD_B,
        "c" => WORKLOAD_C,
        "d" => WORKLOAD_D,
        "e" => WORKLOAD_E,
        "f" => WORKLOAD_F,
        _ => return Err(PropertyError::UnknownWorkload(name.to_string())),
    })
}

pub const WORKLOAD_A: &str = "# Workload A: update heavy (50/50 reads and updates), zipfian\nrecordcount=1000\noperationcount=1000\nworkload=site.ycsb.workloads.CoreWorkload\nreadallfields=true\nreadproportion=0.5\nupdateproportion=0.5\nscanproportion=0\ninsertproportion=0\nrequestdistribution=zipfian\n";
pub const WORKLOAD_B: &str = "# Workload B: read mostly (95/5 reads and updates), zipfian\nrecordcount=1000\noperationcount=1000\nworkload=site.ycsb.workloads.CoreWorkload\nreadallfields=true\nreadproportion=0.95\nupdateproportion=0.05\nscanproportion=0\ninsertproportion=0\nrequestdistribution=zipfian\n";
pub const WORKLOAD_C: &str = "# Workload C: read only, zipfian\nrecordcount=1000\noperationcount=1000\nworkload=site.ycsb.workloads.CoreWorkload\nreadallfields=true\nreadproportion=1\nupdateproportion=0\nscanproportion=0\ninsertproportion=0\nrequestdistribution=zipfian\n";
pub const WORKLOAD_D: &str = "# Workload D: read latest (95/5 reads and inserts), latest\nrecordcount=1000\noperationcount=1000\nworkload=site.ycsb.workloads.CoreWorkload\nreadallfields=true\nreadproportion=0.95\nupdateproportion=0\nscanproportion=0\ninsertproportion=0.05\nrequestdistribution=latest\n";
pub const WORKLOAD_E: &str = "# Workload E: short ranges (95/5 scans and inserts), zipfian, uniform scan lengths up to 100\nrecordcount=1000\noperationcount=1000\nworkload=site.ycsb.workloads.CoreWorkload\nreadallfields=true\nreadproportion=0\nupdateproportion=0\nscanproportion=0.95\ninsertproportion=0.05\nrequestdistribution=zipfian\nmaxscanlength=100\nscanlengthdistribution=uniform\n";
pub const WORKLOAD_F: &str = "# Workload F: read-modify-write (50/50 reads and RMW), zipfian\nrecordcount=1000\noperationcount=1000\nworkload=site.ycsb.workloads.CoreWorkload\nreadallfields=true\nreadproportion=0.5\nupdateproportion=0\nscanproportion=0\ninsertproportion=0\nreadmodifywriteproportion=0.5\nrequestdistribution=zipfian\n";

impl Properties {
    pub fn new() -> Properties {
        Properties::default()
    }

    /// Reads `key=value` (or `key:value`) lines; `#` and `!` start comments.
    pub fn load(&mut self, name: &str, text: &str) -> Result<(), PropertyError> {
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let origin = Origin::File {
                name: name.to_string(),
                line: i + 1,
            };
            let Some(at) = line.find(['=', ':']) else {
                return Err(PropertyError::Malformed {
                    origin,
                    text: line.to_string(),
                });
            };
            let (key, value) = (line[..at].trim(), line[at + 1..].trim());
            if key.is_empty() {
                return Err(PropertyError::Malformed {
                    origin,
                    text: line.to_string(),
                });
            }
            self.set(key, value, origin)?;
        }
        Ok(())
    }

    /// A `-p key=value` override.
    pub fn set_override(&mut self, kv: &str) -> Result<(), PropertyError> {
        match kv.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => self.set(k.trim(), v.trim(), Origin::Override),
            _ => Err(PropertyError::Malformed {
                origin: Origin::Override,
                text: kv.to_string(),
            }),
        }
    }

    fn set(&mut self, key: &str, value: &str, origin: Origin) -> Result<(), PropertyError> {
        if !KNOWN_KEYS.contains(&key) {
            return Err(PropertyError::Unknown {
                origin,
                key: key.to_string(),
            });
        }
        self.values
            .insert(key.to_string(), (value.to_string(), origin));
        Ok(())
    }

    /// Every property and its value, sorted by key.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values
            .iter()
            .map(|(k, (v, _))| (k.as_str(), v.as_str()))
    }

    pub fn get(&self, key: &str) -> Option<(&str, &Origin)> {
        self.values.get(key).map(|(v, o)| (v.as_str(), o))
    }

    fn bad(&self, key: &str, why: impl Into<String>) -> PropertyError {
        let (value, origin) = self
            .values
            .get(key)
            .cloned()
            .unwrap_or_else(|| (String::new(), Origin::Default));
        PropertyError::BadValue {
            origin,
            key: key.to_string(),
            value,
            why: why.into(),
        }
    }

    pub fn u64_or(&self, key: &str, default: u64) -> Result<u64, PropertyError> {
        match self.get(key) {
            None => Ok(default),
            Some((v, _)) => v
                .parse()
                .map_err(|_| self.bad(key, "not a non-negative integer")),
        }
    }

    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64, PropertyError> {
        match self.get(key) {
            None => Ok(default),
            Some((v, _)) => match v.parse::<f64>() {
                Ok(x) if x.is_finite() => Ok(x),
                _ => Err(self.bad(key, "not a number")),
            },
        }
    }

    /// A proportion or fraction in [0, 1].
    pub fn fraction_or(&self, key: &str, default: f64) -> Result<f64, PropertyError> {
        let x = self.f64_or(key, default)?;
        if (0.0..=1.0).contains(&x) {
            Ok(x)
        } else {
            Err(self.bad(key, "must be between 0 and 1"))
        }
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, PropertyError> {
        match self.get(key) {
            None => Ok(default),
            Some((v, _)) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some((v, _)) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(_) => Err(self.bad(key, "expected true or false")),
        }
    }

    pub fn string_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).map_or(default, |(v, _)| v)
    }

    /// One of `choices`; the error lists them.
    pub fn choice_or<'a>(
        &self,
        key: &str,
        default: &'a str,
        choices: &[&'a str],
    ) -> Result<&'a str, PropertyError> {
        let v = self.string_or(key, default);
        choices
            .iter()
            .find(|c| c.eq_ignore_ascii_case(v))
            .copied()
            .ok_or_else(|| self.bad(key, format!("expected one of {}", choices.join(", "))))
    }

    pub fn error(&self, key: &str, why: impl Into<String>) -> PropertyError {
        self.bad(key, why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_overrides_and_errors_name_their_line() {
        let mut p = Properties::new();
        p.load(
            "w",
            "# comment\n\nrecordcount = 10\n! also a comment\nfieldcount:3\n",
        )
        .unwrap();
        assert_eq!(p.u64_or("recordcount", 0), Ok(10));
        assert_eq!(p.u64_or("fieldcount", 0), Ok(3));
        p.set_override("recordcount=20").unwrap();
        assert_eq!(p.u64_or("recordcount", 0), Ok(20));
        let e = p.load("w", "ok=1\n").unwrap_err();
        assert_eq!(e.to_string(), "w line 1: unknown property `ok`");
        let e = p.load("w", "\n\njust words\n").unwrap_err();
        assert!(e.to_string().starts_with("w line 3:"), "{e}");
        p.load("w", "readproportion=1.5\n").unwrap();
        let e = p.fraction_or("readproportion", 0.0).unwrap_err();
        assert!(
            e.to_string().contains("w line 1: readproportion = `1.5`"),
            "{e}"
        );
        assert!(p.set_override("novalue").is_err());
    }

    #[test]
    fn builtins_parse() {
        for w in ["a", "b", "c", "d", "e", "f", "A"] {
            let mut p = Properties::new();
            p.load(w, builtin(w).unwrap()).unwrap();
            assert_eq!(p.u64_or("recordcount", 0), Ok(1000));
        }
        assert!(builtin("g").is_err());
    }
}
