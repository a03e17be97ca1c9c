//! The key-value App: YCSB's records (named fields) under ordered keys.
//!
//! The state digest is a two-level SHA-256 tree: each record keeps the
//! SHA-256 of its canonical encoding (rehashed when it is written), and the
//! digest hashes every key with its record's hash, in key order. A Byzantine
//! replica cannot serve other contents under a genuine checkpoint certificate
//! without a SHA-256 collision. An additive (multiset) hash kept per update
//! was forgeable (Wagner's generalized birthday); a lattice one strong enough
//! (LtHash16, 2 KiB per element) costs far more per update, and hashing the
//! whole store at each checkpoint stalls the replica (ARCHITECTURE.md, "The
//! App's digest", with measurements).
//!
//! A record is kept as its fields encode in a read result and a snapshot, so
//! a read of every field (YCSB's default) and a checkpoint's snapshot copy
//! each record whole instead of walking its fields, and an update that keeps
//! a field's length (YCSB's) overwrites the value in place.

use crate::op::*;
use bft_core::app::{App, RestoreError};
use bft_core::codec::{Reader, Writer};
use bft_core::crypto::Digest;
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

/// Bytes the store holds at most (keys, field names and values), so that a
/// snapshot always fits state transfer.
pub const STORE_BYTES_MAX: usize = 32 << 20;
/// Bytes of records one scan returns at most; a longer scan is cut (and says so).
pub const SCAN_RESULT_BYTES_MAX: usize = 192 << 10;
const _: () = assert!(SCAN_RESULT_BYTES_MAX + 16 <= bft_core::limits::RESULT_BYTES_MAX);

/// One record: its fields in name order, each `[name length u32][name]
/// [value length u32][value]`, as a read result and a snapshot encode them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    count: usize,
    encoded: Vec<u8>,
    /// SHA-256 of `count` and `encoded` (`rehash`), for the state digest.
    digest: Digest,
}

/// Reads a little-endian u32 length at `at`, if the bytes are there.
fn len_at(b: &[u8], at: usize) -> Option<usize> {
    let l: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_le_bytes(l) as usize)
}

impl Record {
    /// A record of `fields` (unique names, kept in order).
    pub fn from_fields<'a>(fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Record {
        let mut w = Writer::new();
        let mut count = 0;
        for (n, v) in fields {
            w.bytes(n);
            w.bytes(v);
            count += 1;
        }
        let mut r = Record {
            count,
            encoded: w.finish(),
            digest: [0; 32],
        };
        r.rehash();
        r
    }

    fn rehash(&mut self) {
        let mut h = Sha256::new();
        h.update(RECORD_TAG);
        h.update((self.count as u32).to_le_bytes());
        h.update(&self.encoded);
        self.digest = h.finalize().into();
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// (name, value, where the value starts) of each field, in name order.
    fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8], usize)> {
        let b = &self.encoded;
        let mut at = 0;
        std::iter::from_fn(move || {
            let nl = len_at(b, at)?;
            let name = b.get(at + 4..at + 4 + nl)?;
            let v_at = at + 8 + nl;
            let vl = len_at(b, v_at - 4)?;
            let value = b.get(v_at..v_at + vl)?;
            at = v_at + vl;
            Some((name, value, v_at))
        })
    }

    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries().map(|(n, v, _)| (n, v))
    }

    pub fn get(&self, name: &str) -> Option<&[u8]> {
        let (at, len) = self.find(name)?;
        self.encoded.get(at..at + len)
    }

    /// Where the field's value starts, and its length.
    fn find(&self, name: &str) -> Option<(usize, usize)> {
        self.entries()
            .find(|(n, _, _)| *n == name.as_bytes())
            .map(|(_, v, at)| (at, v.len()))
    }

    /// Sets a field found at `found` (by `find`): in place if the value keeps
    /// its length, otherwise by re-encoding the record with the field in order.
    /// The caller rehashes once it has set every field it writes.
    fn set_at(&mut self, found: Option<(usize, usize)>, name: &str, value: &[u8]) {
        if let Some((at, len)) = found.filter(|(_, len)| *len == value.len()) {
            self.encoded[at..at + len].copy_from_slice(value);
            return;
        }
        let mut all: BTreeMap<&[u8], &[u8]> = self.fields().collect();
        all.insert(name.as_bytes(), value);
        *self = Record::from_fields(all);
    }
}

impl std::ops::Index<&str> for Record {
    type Output = [u8];
    fn index(&self, name: &str) -> &[u8] {
        self.get(name).expect("no such field")
    }
}

/// Result status, first byte of every result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    Ok = 0,
    NotFound = 1,
    Error = 2,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvApp {
    records: BTreeMap<String, Record>,
    bytes: usize,
}

/// A record's encoded size (with its length prefixes), as in a snapshot.
fn record_bytes(key: &str, r: &Record) -> usize {
    8 + key.len() + r.encoded.len()
}

/// A field's encoded size (with its length prefixes), as in a snapshot.
fn field_bytes(name: &str, value: &[u8]) -> usize {
    8 + name.len() + value.len()
}

fn encode_record(w: &mut Writer, key: &str, r: &Record) {
    w.bytes(key.as_bytes());
    w.len(r.count);
    w.raw(&r.encoded);
}

fn result(status: Status, body: impl FnOnce(&mut Writer)) -> Vec<u8> {
    result_sized(status, 1, body)
}

/// A result of about `bytes` bytes, written without reallocating.
fn result_sized(status: Status, bytes: usize, body: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut w = Writer::with_capacity(bytes);
    w.u8(status as u8);
    body(&mut w);
    w.finish()
}

fn error(msg: &str) -> Vec<u8> {
    result(Status::Error, |w| w.bytes(msg.as_bytes()))
}

impl KvApp {
    pub fn new() -> KvApp {
        KvApp::default()
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&Record> {
        self.records.get(key)
    }

    fn account(&mut self, key: &str, r: &Record, add: bool) {
        let b = record_bytes(key, r);
        self.bytes = if add { self.bytes + b } else { self.bytes - b };
    }

    /// Replaces (or removes, with None) a record, keeping digest and size.
    fn put(&mut self, key: &str, new: Option<Record>) -> Result<(), &'static str> {
        let old_bytes = self.records.get(key).map_or(0, |r| record_bytes(key, r));
        let new_bytes = new.as_ref().map_or(0, |r| record_bytes(key, r));
        if self.bytes - old_bytes + new_bytes > STORE_BYTES_MAX {
            return Err("store full: STORE_BYTES_MAX reached");
        }
        if let Some(old) = self.records.remove(key) {
            self.account(key, &old, false);
        }
        if let Some(r) = new {
            if r.len() > FIELDS_MAX {
                return Err("too many fields in the record");
            }
            self.account(key, &r, true);
            self.records.insert(key.to_string(), r);
        }
        Ok(())
    }

    fn read(&self, key: &str, fields: &Option<Vec<String>>) -> Vec<u8> {
        match self.records.get(key) {
            None => result(Status::NotFound, |_| {}),
            Some(r) => {
                let bytes = 16 + r.encoded.len();
                result_sized(Status::Ok, bytes, |w| encode_fields(w, r, fields))
            }
        }
    }

    /// Writes `values` into an existing record in place (a later duplicate
    /// name wins). Limits are checked first, so a refused update changes
    /// nothing.
    fn update(&mut self, key: &str, values: Vec<(String, Vec<u8>)>) -> Vec<u8> {
        let Some(r) = self.records.get_mut(key) else {
            return result(Status::NotFound, |_| {});
        };
        // Only a name's last value counts towards the limits (YCSB writes one
        // field: nothing to dedupe, and its place is found once, no allocation).
        let several = values.len() > 1;
        let mut seen = BTreeSet::new();
        let mut found_last = None;
        let (mut bytes, mut fields) = (self.bytes, r.len());
        for (n, v) in values.iter().rev() {
            if several && !seen.insert(n.as_str()) {
                continue;
            }
            let at = r.find(n);
            match at {
                Some((_, len)) => bytes -= 8 + n.len() + len,
                None => fields += 1,
            }
            bytes += field_bytes(n, v);
            found_last = at;
        }
        if bytes > STORE_BYTES_MAX {
            return error("store full: STORE_BYTES_MAX reached");
        }
        if fields > FIELDS_MAX {
            return error("too many fields in the record");
        }
        for (n, v) in values {
            // An earlier write of several may have moved the field: look again.
            let at = if several { r.find(&n) } else { found_last };
            r.set_at(at, &n, &v);
        }
        r.rehash();
        self.bytes = bytes;
        result(Status::Ok, |_| {})
    }

    fn scan(&self, start: &str, count: u32, fields: &Option<Vec<String>>) -> Vec<u8> {
        let count = count.min(SCAN_RECORDS_MAX) as usize;
        let mut body = Writer::new();
        let (mut n, mut cut) = (0u32, false);
        let range = self
            .records
            .range::<str, _>((Bound::Included(start), Bound::Unbounded));
        for (k, r) in range.take(count) {
            let mut one = Writer::new();
            one.bytes(k.as_bytes());
            encode_fields(&mut one, r, fields);
            if body.buf.len() + one.buf.len() > SCAN_RESULT_BYTES_MAX {
                cut = true;
                break;
            }
            body.raw(&one.buf);
            n += 1;
        }
        result(Status::Ok, |w| {
            w.u8(cut as u8);
            w.u32(n);
            w.raw(&body.buf);
        })
    }

    fn apply(&mut self, op: Op) -> Vec<u8> {
        match op {
            Op::Read { key, fields } => self.read(&key, &fields),
            Op::Update { key, values } => self.update(&key, values),
            Op::Insert { key, values } => {
                // A later duplicate name wins, as in a map.
                let fields: BTreeMap<&[u8], &[u8]> = values
                    .iter()
                    .map(|(n, v)| (n.as_bytes(), v.as_slice()))
                    .collect();
                match self.put(&key, Some(Record::from_fields(fields))) {
                    Ok(()) => result(Status::Ok, |_| {}),
                    Err(e) => error(e),
                }
            }
            Op::Delete { key } => match self.records.contains_key(&key) {
                false => result(Status::NotFound, |_| {}),
                true => {
                    let _ = self.put(&key, None);
                    result(Status::Ok, |_| {})
                }
            },
            Op::Scan {
                start,
                count,
                fields,
            } => self.scan(&start, count, &fields),
            Op::ReadModifyWrite {
                key,
                fields,
                values,
            } => {
                let read = self.read(&key, &fields);
                if read.first() != Some(&(Status::Ok as u8)) {
                    return read;
                }
                match self.update(&key, values).first() {
                    Some(&s) if s == Status::Ok as u8 => read,
                    _ => error("update after read failed"),
                }
            }
        }
    }
}

/// Name what each level of the digest covers (and this encoding of it).
const DIGEST_TAG: &[u8] = b"bftbench-kv-state-sha256\0";
const RECORD_TAG: &[u8] = b"bftbench-kv-record-sha256\0";

fn encode_fields(w: &mut Writer, r: &Record, fields: &Option<Vec<String>>) {
    match fields {
        None => {
            w.len(r.count);
            w.raw(&r.encoded);
        }
        Some(names) => {
            let hits: Vec<_> = names.iter().filter_map(|n| Some((n, r.get(n)?))).collect();
            w.len(hits.len());
            for (n, v) in hits {
                w.bytes(n.as_bytes());
                w.bytes(v);
            }
        }
    }
}

impl App for KvApp {
    fn execute(&mut self, op: &[u8]) -> Vec<u8> {
        match Op::decode(op) {
            Ok(op) => self.apply(op),
            Err(e) => error(&format!("bad operation: {e}")),
        }
    }

    fn digest(&self) -> Digest {
        // Length-prefixed keys and fixed-size record hashes: one reading.
        let mut h = Sha256::new();
        h.update(DIGEST_TAG);
        h.update((self.records.len() as u64).to_le_bytes());
        for (k, r) in &self.records {
            h.update((k.len() as u32).to_le_bytes());
            h.update(k.as_bytes());
            h.update(r.digest);
        }
        h.finalize().into()
    }

    fn snapshot(&self) -> Vec<u8> {
        // `bytes` is the records' encoded size, so this never reallocates.
        let mut w = Writer::with_capacity(4 + self.bytes);
        w.len(self.records.len());
        for (k, r) in &self.records {
            encode_record(&mut w, k, r);
        }
        w.finish()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        let bad = |e: bft_core::codec::DecodeError| RestoreError(format!("KV snapshot: {e}"));
        let mut r = Reader::new(snapshot);
        let n = r.len("records", usize::MAX, 8).map_err(bad)?;
        let mut fresh = KvApp::new();
        let mut prev: Option<String> = None;
        for _ in 0..n {
            let key = read_string(&mut r, KEY_BYTES_MAX).map_err(bad)?;
            if prev.as_ref().is_some_and(|p| *p >= key) {
                return Err(RestoreError("KV snapshot: keys out of order".into()));
            }
            let nf = r.len("fields", FIELDS_MAX, 8).map_err(bad)?;
            let mut rec = BTreeMap::new();
            for _ in 0..nf {
                let name = r.bytes("field name", FIELD_NAME_BYTES_MAX).map_err(bad)?;
                // Canonical only (as `snapshot` writes): one encoding per state.
                if rec.last_key_value().is_some_and(|(last, _)| *last >= name) {
                    return Err(RestoreError("KV snapshot: fields out of order".into()));
                }
                std::str::from_utf8(name)
                    .map_err(|_| RestoreError("KV snapshot: a field name is not UTF-8".into()))?;
                let v = r
                    .bytes("value", bft_core::limits::OP_BYTES_MAX)
                    .map_err(bad)?;
                rec.insert(name, v);
            }
            fresh
                .put(&key, Some(Record::from_fields(rec)))
                .map_err(|e| RestoreError(format!("KV snapshot: {e}")))?;
            prev = Some(key);
        }
        r.finish().map_err(bad)?;
        *self = fresh;
        Ok(())
    }
}

fn read_string(r: &mut Reader, max: usize) -> Result<String, bft_core::codec::DecodeError> {
    let b = r.bytes("string", max)?;
    String::from_utf8(b.to_vec()).map_err(|_| bft_core::codec::DecodeError::Invalid("not UTF-8"))
}
