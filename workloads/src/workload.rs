//! CoreWorkload: turns properties into the load-phase and run-phase operation
//! streams, as Java YCSB's `site.ycsb.workloads.CoreWorkload` does.

use crate::generators::*;
use crate::keys::KeyNamer;
use crate::op::Op;
use crate::properties::{Properties, PropertyError};
use bft_core::rng::Rng;
use std::collections::BTreeSet;

/// Inserts issued but not yet acknowledged, at most (YCSB's window).
pub const UNACKED_INSERTS_MAX: usize = 1 << 20;
/// Largest encoded record the generator will build (fits one request).
pub const RECORD_BYTES_MAX: u64 = 60 << 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum OpKind {
    Read,
    Update,
    Insert,
    Scan,
    ReadModifyWrite,
}

#[derive(Clone, Debug)]
enum KeyChooser {
    Uniform(Uniform),
    Zipfian(ScrambledZipfian),
    Latest(SkewedLatest),
    Hotspot(Hotspot),
    Sequential(Sequential),
    Exponential(Exponential),
}

#[derive(Clone, Debug)]
enum Length {
    Constant(u64),
    Uniform(Uniform),
    Zipfian(Zipfian),
}

impl Length {
    fn next(&mut self, rng: &mut Rng) -> u64 {
        match self {
            Length::Constant(n) => *n,
            Length::Uniform(u) => u.next(rng),
            Length::Zipfian(z) => z.next(rng),
        }
    }
}

/// YCSB's AcknowledgedCounterGenerator: hands out insert key numbers and
/// tracks the highest one below which every insert was acknowledged.
#[derive(Clone, Debug)]
pub struct AckCounter {
    next: u64,
    limit: u64,
    acked_ahead: BTreeSet<u64>,
}

impl AckCounter {
    pub fn new(start: u64) -> AckCounter {
        AckCounter {
            next: start,
            limit: start.wrapping_sub(1),
            acked_ahead: BTreeSet::new(),
        }
    }
    pub fn issue(&mut self) -> u64 {
        self.next += 1;
        self.next - 1
    }
    /// The last key number all inserts up to which are acknowledged.
    pub fn last(&self) -> u64 {
        self.limit
    }
    pub fn acknowledge(&mut self, keynum: u64) -> Result<(), WorkloadError> {
        if self.acked_ahead.len() >= UNACKED_INSERTS_MAX {
            return Err(WorkloadError::TooManyUnacked);
        }
        self.acked_ahead.insert(keynum);
        while self.acked_ahead.remove(&self.limit.wrapping_add(1)) {
            self.limit = self.limit.wrapping_add(1);
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WorkloadError {
    #[error(transparent)]
    Property(#[from] PropertyError),
    #[error("more than {UNACKED_INSERTS_MAX} inserts are waiting for acknowledgement")]
    TooManyUnacked,
}

/// The typed settings, read once from the properties.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub record_count: u64,
    pub operation_count: u64,
    pub insert_start: u64,
    pub insert_count: u64,
    pub field_count: u64,
    pub field_length: u64,
    pub min_field_length: u64,
    pub field_length_distribution: &'static str,
    pub field_prefix: String,
    pub table: String,
    pub read_all_fields: bool,
    pub write_all_fields: bool,
    pub data_integrity: bool,
    pub proportions: [(OpKind, f64); 5],
    pub request_distribution: &'static str,
    pub namer: KeyNamer,
    pub min_scan_length: u64,
    pub max_scan_length: u64,
    pub scan_length_distribution: &'static str,
    pub hotspot_data: f64,
    pub hotspot_ops: f64,
    pub exponential_percentile: f64,
    pub exponential_frac: f64,
}

impl Settings {
    pub fn from_properties(p: &Properties) -> Result<Settings, PropertyError> {
        let record_count = p.u64_or("recordcount", 0)?;
        let insert_start = p.u64_or("insertstart", 0)?;
        let insert_count = p.u64_or("insertcount", record_count.saturating_sub(insert_start))?;
        let s = Settings {
            record_count,
            operation_count: p.u64_or("operationcount", 0)?,
            insert_start,
            insert_count,
            field_count: p.u64_or("fieldcount", 10)?,
            field_length: p.u64_or("fieldlength", 100)?,
            min_field_length: p.u64_or("minfieldlength", 1)?,
            field_length_distribution: p.choice_or(
                "fieldlengthdistribution",
                "constant",
                &["constant", "uniform", "zipfian", "histogram"],
            )?,
            field_prefix: p.string_or("fieldnameprefix", "field").to_string(),
            table: p.string_or("table", "usertable").to_string(),
            read_all_fields: p.bool_or("readallfields", true)?,
            write_all_fields: p.bool_or("writeallfields", false)?,
            data_integrity: p.bool_or("dataintegrity", false)?,
            proportions: [
                (OpKind::Read, p.fraction_or("readproportion", 0.95)?),
                (OpKind::Update, p.fraction_or("updateproportion", 0.05)?),
                (OpKind::Insert, p.fraction_or("insertproportion", 0.0)?),
                (OpKind::Scan, p.fraction_or("scanproportion", 0.0)?),
                (
                    OpKind::ReadModifyWrite,
                    p.fraction_or("readmodifywriteproportion", 0.0)?,
                ),
            ],
            request_distribution: p.choice_or(
                "requestdistribution",
                "uniform",
                &[
                    "uniform",
                    "zipfian",
                    "latest",
                    "hotspot",
                    "sequential",
                    "exponential",
                ],
            )?,
            namer: KeyNamer {
                hashed: p.choice_or("insertorder", "hashed", &["hashed", "ordered"])? == "hashed",
                zero_padding: p.u64_or("zeropadding", 1)? as usize,
            },
            min_scan_length: p.u64_or("minscanlength", 1)?,
            max_scan_length: p.u64_or("maxscanlength", 1000)?,
            scan_length_distribution: p.choice_or(
                "scanlengthdistribution",
                "uniform",
                &["uniform", "zipfian"],
            )?,
            hotspot_data: p.fraction_or("hotspotdatafraction", 0.2)?,
            hotspot_ops: p.fraction_or("hotspotopnfraction", 0.8)?,
            exponential_percentile: p.f64_or("exponential.percentile", 95.0)?,
            exponential_frac: p.f64_or("exponential.frac", 0.857_142_857_1)?,
        };
        s.validate(p)?;
        Ok(s)
    }

    fn validate(&self, p: &Properties) -> Result<(), PropertyError> {
        if self.field_length_distribution == "histogram" {
            return Err(p.error(
                "fieldlengthdistribution",
                "histogram (a lengths file) is not supported; use constant, uniform or zipfian",
            ));
        }
        if self.field_count == 0 || self.field_count > crate::op::FIELDS_MAX as u64 {
            return Err(p.error(
                "fieldcount",
                format!("must be 1..={}", crate::op::FIELDS_MAX),
            ));
        }
        if self.field_length == 0 || self.min_field_length > self.field_length {
            return Err(p.error("fieldlength", "must be ≥ 1 and ≥ minfieldlength"));
        }
        if self.field_count * (self.field_length + 16) > RECORD_BYTES_MAX {
            return Err(p.error(
                "fieldlength",
                format!(
                    "fieldcount × fieldlength exceeds the {RECORD_BYTES_MAX}-byte record bound"
                ),
            ));
        }
        if self.min_scan_length == 0 || self.min_scan_length > self.max_scan_length {
            return Err(p.error("maxscanlength", "must be ≥ minscanlength ≥ 1"));
        }
        if self.proportions.iter().all(|(_, w)| *w == 0.0) {
            return Err(p.error("readproportion", "every operation proportion is 0"));
        }
        if self.insert_count == 0 && self.request_distribution != "latest" {
            return Err(p.error("recordcount", "no records to operate on"));
        }
        if !(0.0..100.0).contains(&self.exponential_percentile) || self.exponential_frac <= 0.0 {
            return Err(p.error(
                "exponential.percentile",
                "needs 0 ≤ percentile < 100 and frac > 0",
            ));
        }
        Ok(())
    }
}

/// The operation streams of one client (or one load generator thread).
#[derive(Clone, Debug)]
pub struct Workload {
    pub settings: Settings,
    rng: Rng,
    field_names: Vec<String>,
    field_length: Length,
    scan_length: Length,
    key_chooser: KeyChooser,
    operations: Discrete<OpKind>,
    load_next: u64,
    inserts: AckCounter,
}

impl Workload {
    pub fn new(p: &Properties, seed: u64) -> Result<Workload, WorkloadError> {
        let s = Settings::from_properties(p)?;
        let field_names = (0..s.field_count)
            .map(|i| format!("{}{i}", s.field_prefix))
            .collect();
        let field_length = match s.field_length_distribution {
            "uniform" => Length::Uniform(Uniform::new(s.min_field_length, s.field_length)),
            "zipfian" => Length::Zipfian(Zipfian::new(s.min_field_length, s.field_length)),
            _ => Length::Constant(s.field_length),
        };
        let scan_length = match s.scan_length_distribution {
            "zipfian" => Length::Zipfian(Zipfian::new(s.min_scan_length, s.max_scan_length)),
            _ => Length::Uniform(Uniform::new(s.min_scan_length, s.max_scan_length)),
        };
        let inserts = AckCounter::new(s.record_count);
        let key_chooser = Self::key_chooser(&s, inserts.last());
        Ok(Workload {
            rng: Rng::new(seed),
            field_names,
            field_length,
            scan_length,
            key_chooser,
            operations: Discrete::new(s.proportions.iter().map(|(k, w)| (*w, *k)).collect()),
            load_next: s.insert_start,
            inserts,
            settings: s,
        })
    }

    fn key_chooser(s: &Settings, last: u64) -> KeyChooser {
        let (lo, hi) = (
            s.insert_start,
            (s.insert_start + s.insert_count).saturating_sub(1),
        );
        match s.request_distribution {
            "zipfian" => {
                // Sized for the inserts to come, so that popular keys stay popular
                // as the key space grows; draws beyond the last insert are redrawn.
                let insert_p = s.proportions[2].1;
                let expected_new = (s.operation_count as f64 * insert_p * 2.0) as u64;
                KeyChooser::Zipfian(ScrambledZipfian::new(
                    lo,
                    lo + s.insert_count + expected_new,
                ))
            }
            "latest" => KeyChooser::Latest(SkewedLatest::new(last)),
            "hotspot" => KeyChooser::Hotspot(Hotspot::new(lo, hi, s.hotspot_data, s.hotspot_ops)),
            "sequential" => KeyChooser::Sequential(Sequential::new(lo, hi)),
            "exponential" => KeyChooser::Exponential(Exponential::new(
                s.exponential_percentile,
                s.record_count as f64 * s.exponential_frac,
            )),
            _ => KeyChooser::Uniform(Uniform::new(lo, hi)),
        }
    }

    /// A key number for a read, update, scan or read-modify-write: never beyond
    /// the last acknowledged insert (YCSB's `nextKeynum`).
    pub fn next_keynum(&mut self) -> u64 {
        let last = self.inserts.last();
        let rng = &mut self.rng;
        for _ in 0..1_000_000 {
            let k = match &mut self.key_chooser {
                KeyChooser::Uniform(g) => g.next(rng),
                KeyChooser::Zipfian(g) => g.next(rng),
                KeyChooser::Latest(g) => return g.next(rng, last),
                KeyChooser::Hotspot(g) => g.next(rng),
                KeyChooser::Sequential(g) => g.next_value(),
                KeyChooser::Exponential(g) => {
                    // Java truncates the draw to an int and redraws below 0.
                    let back = g.next(rng) as i32 as i64;
                    match (last as i64).checked_sub(back) {
                        Some(k) if k >= 0 => return k as u64,
                        _ => continue,
                    }
                }
            };
            if k <= last {
                return k;
            }
        }
        last
    }

    pub fn key_name(&self, keynum: u64) -> String {
        self.settings.namer.name(keynum)
    }

    /// The next insert of the load phase, or None once `insertcount` are out.
    pub fn load_op(&mut self) -> Option<Op> {
        if self.load_next >= self.settings.insert_start + self.settings.insert_count {
            return None;
        }
        let keynum = self.load_next;
        self.load_next += 1;
        let key = self.key_name(keynum);
        let values = self.all_values(&key);
        Some(Op::Insert { key, values })
    }

    /// The next run-phase operation. An insert comes with its key number, to be
    /// passed to [`Workload::ack_insert`] once the insert completed: until
    /// then, reads do not choose it.
    pub fn run_op(&mut self) -> (Op, Option<u64>) {
        match self.operations.next(&mut self.rng) {
            OpKind::Read => {
                let key = self.chosen_key();
                let fields = self.read_fields();
                (Op::Read { key, fields }, None)
            }
            OpKind::Update => {
                let key = self.chosen_key();
                let values = self.write_values(&key);
                (Op::Update { key, values }, None)
            }
            OpKind::Insert => {
                let keynum = self.inserts.issue();
                let key = self.key_name(keynum);
                let values = self.all_values(&key);
                (Op::Insert { key, values }, Some(keynum))
            }
            OpKind::Scan => {
                let start = self.chosen_key();
                let count = self.scan_length.next(&mut self.rng).min(u32::MAX as u64) as u32;
                let fields = self.read_fields();
                (
                    Op::Scan {
                        start,
                        count,
                        fields,
                    },
                    None,
                )
            }
            OpKind::ReadModifyWrite => {
                let key = self.chosen_key();
                let fields = self.read_fields();
                let values = self.write_values(&key);
                (
                    Op::ReadModifyWrite {
                        key,
                        fields,
                        values,
                    },
                    None,
                )
            }
        }
    }

    pub fn ack_insert(&mut self, keynum: u64) -> Result<(), WorkloadError> {
        self.inserts.acknowledge(keynum)
    }

    /// The last acknowledged insert's key number.
    pub fn last_inserted(&self) -> u64 {
        self.inserts.last()
    }

    fn chosen_key(&mut self) -> String {
        let k = self.next_keynum();
        self.key_name(k)
    }

    fn random_field(&mut self) -> usize {
        self.rng.below(self.field_names.len() as u64) as usize
    }

    fn read_fields(&mut self) -> Option<Vec<String>> {
        if self.settings.read_all_fields {
            None
        } else {
            let i = self.random_field();
            Some(vec![self.field_names[i].clone()])
        }
    }

    fn all_values(&mut self, key: &str) -> Vec<(String, Vec<u8>)> {
        (0..self.field_names.len())
            .map(|i| self.value(key, i))
            .collect()
    }

    fn write_values(&mut self, key: &str) -> Vec<(String, Vec<u8>)> {
        if self.settings.write_all_fields {
            self.all_values(key)
        } else {
            let i = self.random_field();
            vec![self.value(key, i)]
        }
    }

    fn value(&mut self, key: &str, field: usize) -> (String, Vec<u8>) {
        let len = self.field_length.next(&mut self.rng) as usize;
        let name = self.field_names[field].clone();
        let v = if self.settings.data_integrity {
            deterministic_value(key, &name, len)
        } else {
            random_printable(&mut self.rng, len)
        };
        (name, v)
    }
}

/// YCSB's `buildDeterministicValue`: `key:field` extended by `:` and the Java
/// hash code of what is there so far, cut to `len`.
pub fn deterministic_value(key: &str, field: &str, len: usize) -> Vec<u8> {
    let mut s = format!("{key}:{field}");
    while s.len() < len {
        let h = java_string_hash(&s);
        s.push(':');
        s.push_str(&h.to_string());
    }
    s.truncate(len);
    s.into_bytes()
}

fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// Printable ASCII, like YCSB's RandomByteIterator.
fn random_printable(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rng.fill(&mut v);
    for b in &mut v {
        *b = b' ' + (*b % 95);
    }
    v
}
