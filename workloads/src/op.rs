//! YCSB operations and their encoding as a request payload for the KV App.

use bft_core::codec::{DecodeError, Reader, Writer};

/// Bounds the KV App enforces on every operation.
pub const KEY_BYTES_MAX: usize = 1024;
pub const FIELD_NAME_BYTES_MAX: usize = 256;
pub const FIELDS_MAX: usize = 1024;
pub const SCAN_RECORDS_MAX: u32 = 10_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `fields: None` reads every field.
    Read {
        key: String,
        fields: Option<Vec<String>>,
    },
    Update {
        key: String,
        values: Vec<(String, Vec<u8>)>,
    },
    Insert {
        key: String,
        values: Vec<(String, Vec<u8>)>,
    },
    Delete {
        key: String,
    },
    Scan {
        start: String,
        count: u32,
        fields: Option<Vec<String>>,
    },
    ReadModifyWrite {
        key: String,
        fields: Option<Vec<String>>,
        values: Vec<(String, Vec<u8>)>,
    },
}

impl Op {
    /// Every operation's [`Op::name`].
    pub const NAMES: [&'static str; 6] = [
        "READ",
        "UPDATE",
        "INSERT",
        "DELETE",
        "SCAN",
        "READ-MODIFY-WRITE",
    ];

    /// YCSB's name for the operation (as in its `[READ]` … output blocks).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Read { .. } => "READ",
            Op::Update { .. } => "UPDATE",
            Op::Insert { .. } => "INSERT",
            Op::Delete { .. } => "DELETE",
            Op::Scan { .. } => "SCAN",
            Op::ReadModifyWrite { .. } => "READ-MODIFY-WRITE",
        }
    }

    pub fn key(&self) -> &str {
        match self {
            Op::Read { key, .. }
            | Op::Update { key, .. }
            | Op::Insert { key, .. }
            | Op::Delete { key }
            | Op::ReadModifyWrite { key, .. } => key,
            Op::Scan { start, .. } => start,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            Op::Read { key, fields } => {
                w.u8(1);
                w.bytes(key.as_bytes());
                encode_fields(&mut w, fields);
            }
            Op::Update { key, values } => {
                w.u8(2);
                w.bytes(key.as_bytes());
                encode_values(&mut w, values);
            }
            Op::Insert { key, values } => {
                w.u8(3);
                w.bytes(key.as_bytes());
                encode_values(&mut w, values);
            }
            Op::Delete { key } => {
                w.u8(4);
                w.bytes(key.as_bytes());
            }
            Op::Scan {
                start,
                count,
                fields,
            } => {
                w.u8(5);
                w.bytes(start.as_bytes());
                w.u32(*count);
                encode_fields(&mut w, fields);
            }
            Op::ReadModifyWrite {
                key,
                fields,
                values,
            } => {
                w.u8(6);
                w.bytes(key.as_bytes());
                encode_fields(&mut w, fields);
                encode_values(&mut w, values);
            }
        }
        w.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Op, DecodeError> {
        let mut r = Reader::new(bytes);
        let op = match r.u8()? {
            1 => Op::Read {
                key: string(&mut r, "key", KEY_BYTES_MAX)?,
                fields: decode_fields(&mut r)?,
            },
            2 => Op::Update {
                key: string(&mut r, "key", KEY_BYTES_MAX)?,
                values: decode_values(&mut r)?,
            },
            3 => Op::Insert {
                key: string(&mut r, "key", KEY_BYTES_MAX)?,
                values: decode_values(&mut r)?,
            },
            4 => Op::Delete {
                key: string(&mut r, "key", KEY_BYTES_MAX)?,
            },
            5 => Op::Scan {
                start: string(&mut r, "key", KEY_BYTES_MAX)?,
                count: r.u32()?,
                fields: decode_fields(&mut r)?,
            },
            6 => Op::ReadModifyWrite {
                key: string(&mut r, "key", KEY_BYTES_MAX)?,
                fields: decode_fields(&mut r)?,
                values: decode_values(&mut r)?,
            },
            t => return Err(DecodeError::BadTag(t)),
        };
        r.finish()?;
        Ok(op)
    }
}

fn string(r: &mut Reader, what: &'static str, max: usize) -> Result<String, DecodeError> {
    let b = r.bytes(what, max)?;
    String::from_utf8(b.to_vec()).map_err(|_| DecodeError::Invalid("not UTF-8"))
}

fn encode_fields(w: &mut Writer, fields: &Option<Vec<String>>) {
    match fields {
        None => w.u8(0),
        Some(f) => {
            w.u8(1);
            w.len(f.len());
            for name in f {
                w.bytes(name.as_bytes());
            }
        }
    }
}

fn decode_fields(r: &mut Reader) -> Result<Option<Vec<String>>, DecodeError> {
    match r.u8()? {
        0 => Ok(None),
        1 => {
            let n = r.len("fields", FIELDS_MAX, 4)?;
            (0..n)
                .map(|_| string(r, "field name", FIELD_NAME_BYTES_MAX))
                .collect::<Result<_, _>>()
                .map(Some)
        }
        t => Err(DecodeError::BadTag(t)),
    }
}

fn encode_values(w: &mut Writer, values: &[(String, Vec<u8>)]) {
    w.len(values.len());
    for (name, v) in values {
        w.bytes(name.as_bytes());
        w.bytes(v);
    }
}

fn decode_values(r: &mut Reader) -> Result<Vec<(String, Vec<u8>)>, DecodeError> {
    let n = r.len("values", FIELDS_MAX, 8)?;
    (0..n)
        .map(|_| {
            let name = string(r, "field name", FIELD_NAME_BYTES_MAX)?;
            let v = r.bytes("value", bft_core::limits::OP_BYTES_MAX)?.to_vec();
            Ok((name, v))
        })
        .collect()
}
