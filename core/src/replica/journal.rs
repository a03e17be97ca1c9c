//! The durable state as a journal of changes, so a host can persist a step's
//! changes (not the whole state) before the step's frames leave.
//!
//! A replica built [`Replica::with_journal`](super::Replica::with_journal)
//! records a [`DurableRecord`] wherever its [`Durable`] state changes; the
//! host drains them with `take_journal` after each input. Applying the
//! records in order to the state the replica started from gives back its
//! durable state ([`Durable::apply`]): that is how a restart from disk
//! rebuilds it, and how the simulator models a disk. [`Durable::image`] is
//! the shortest journal of a given state (what a log is rewritten to at a
//! stable checkpoint).

use super::state::{Durable, Slot, Stable};
use crate::codec::{DecodeError, Reader, Writer};
use crate::crypto::Digest;
use crate::limits::{FRAME_BYTES_MAX, WRITESET_MAX};
use crate::message::*;
use std::sync::Arc;

/// One change to a replica's durable state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DurableRecord {
    /// The regency changed (installed or synchronised), or a higher one was
    /// asked for.
    Regency {
        regency: Regency,
        synced_regency: Regency,
        synced_last: Instance,
        stop_floor: Regency,
    },
    /// We sent WRITE(regency, instance, digest).
    Wrote {
        instance: Instance,
        regency: Regency,
        digest: Digest,
    },
    /// We accepted (and sent ACCEPT for) `digest` in `regency`.
    Accepted {
        instance: Instance,
        regency: Regency,
        digest: Digest,
        batch: Arc<Batch>,
    },
    /// The instance was decided; `batch` is `None` when it is the one we accepted.
    Decided {
        instance: Instance,
        digest: Digest,
        batch: Option<Arc<Batch>>,
    },
    /// A new stable checkpoint: the log at and below it is dropped.
    Stable(Stable),
    /// The replica started rejoining without its earlier state (true) or
    /// was allowed to vote again (false).
    Rejoining(bool),
    /// A replica's run (this one's own, or a peer's it learned), verified.
    Incarnation(Incarnation),
}

/// A journal that does not describe a state this replica could have been in.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JournalError {
    #[error("instance {0} is recorded decided by the batch it accepted, but it accepted another")]
    DecidedWithoutBatch(Instance),
    #[error("instance {0}: a write-set of more than {WRITESET_MAX} digests")]
    WriteSetTooLarge(Instance),
    #[error("a record does not decode: {0}")]
    Decode(#[from] DecodeError),
}

const REGENCY: u8 = 1;
const WROTE: u8 = 2;
const ACCEPTED: u8 = 3;
const DECIDED: u8 = 4;
const DECIDED_ACCEPTED: u8 = 5;
const STABLE: u8 = 6;
const REJOINING: u8 = 7;
const INCARNATION: u8 = 8;

impl DurableRecord {
    pub fn encode(&self, w: &mut Writer) {
        match self {
            DurableRecord::Regency {
                regency,
                synced_regency,
                synced_last,
                stop_floor,
            } => {
                w.u8(REGENCY);
                w.u64(*regency);
                w.u64(*synced_regency);
                w.u64(*synced_last);
                w.u64(*stop_floor);
            }
            DurableRecord::Wrote {
                instance,
                regency,
                digest,
            } => encode_vote(w, WROTE, *instance, *regency, digest),
            DurableRecord::Accepted {
                instance,
                regency,
                digest,
                batch,
            } => {
                encode_vote(w, ACCEPTED, *instance, *regency, digest);
                encode_batch(w, batch);
            }
            DurableRecord::Decided {
                instance,
                digest,
                batch,
            } => {
                w.u8(if batch.is_some() {
                    DECIDED
                } else {
                    DECIDED_ACCEPTED
                });
                w.u64(*instance);
                w.raw(digest);
                if let Some(b) = batch {
                    encode_batch(w, b);
                }
            }
            DurableRecord::Stable(s) => {
                w.u8(STABLE);
                encode_checkpoint_cert(w, &s.cert);
                w.bytes(&s.snapshot);
            }
            DurableRecord::Rejoining(on) => {
                w.u8(REJOINING);
                w.u8(u8::from(*on));
            }
            DurableRecord::Incarnation(inc) => {
                w.u8(INCARNATION);
                encode_incarnation(w, inc);
            }
        }
    }

    /// Decodes one record that `encode` wrote; every length is bounded.
    pub fn decode(r: &mut Reader) -> Result<DurableRecord, DecodeError> {
        Ok(match r.u8()? {
            REGENCY => DurableRecord::Regency {
                regency: r.u64()?,
                synced_regency: r.u64()?,
                synced_last: r.u64()?,
                stop_floor: r.u64()?,
            },
            WROTE => DurableRecord::Wrote {
                instance: r.u64()?,
                regency: r.u64()?,
                digest: r.array()?,
            },
            ACCEPTED => DurableRecord::Accepted {
                instance: r.u64()?,
                regency: r.u64()?,
                digest: r.array()?,
                batch: decode_batch(r)?,
            },
            k @ (DECIDED | DECIDED_ACCEPTED) => DurableRecord::Decided {
                instance: r.u64()?,
                digest: r.array()?,
                batch: if k == DECIDED {
                    Some(decode_batch(r)?)
                } else {
                    None
                },
            },
            STABLE => DurableRecord::Stable(Stable {
                cert: decode_checkpoint_cert(r)?,
                snapshot: Arc::new(r.bytes("snapshot", FRAME_BYTES_MAX)?.to_vec()),
            }),
            REJOINING => match r.u8()? {
                0 => DurableRecord::Rejoining(false),
                1 => DurableRecord::Rejoining(true),
                t => return Err(DecodeError::BadTag(t)),
            },
            INCARNATION => DurableRecord::Incarnation(decode_incarnation(r)?),
            tag => return Err(DecodeError::BadTag(tag)),
        })
    }
}

/// A vote record's common part: kind, instance, regency, digest.
fn encode_vote(w: &mut Writer, kind: u8, instance: Instance, regency: Regency, digest: &Digest) {
    w.u8(kind);
    w.u64(instance);
    w.u64(regency);
    w.raw(digest);
}

/// Records one input can produce: a SYNC plan adopted over the whole window
/// writes, accepts and decides every instance, plus a few regency and
/// checkpoint records. The host takes the journal after every input.
pub const JOURNAL_RECORDS_MAX: usize = 3 * crate::limits::LOG_WINDOW_MAX as usize + 64;

impl Durable {
    /// Applies one record, as the replica changed its state when it recorded it.
    pub fn apply(&mut self, rec: DurableRecord) -> Result<(), JournalError> {
        let low = self.stable.cert.instance;
        match rec {
            DurableRecord::Regency {
                regency,
                synced_regency,
                synced_last,
                stop_floor,
            } => {
                self.regency = regency;
                self.synced_regency = synced_regency;
                self.synced_last = synced_last;
                self.stop_floor = stop_floor;
            }
            DurableRecord::Rejoining(on) => self.rejoining = on,
            DurableRecord::Incarnation(inc) => {
                let known = self.incarnations.get(&inc.replica).map_or(0, |i| i.number);
                if inc.number > known {
                    self.incarnations.insert(inc.replica, inc);
                }
            }
            DurableRecord::Stable(stable) => {
                let c = stable.cert.instance;
                if c > low {
                    self.stable = stable;
                    self.slots = self.slots.split_off(&(c + 1));
                }
            }
            DurableRecord::Wrote { instance, .. }
            | DurableRecord::Accepted { instance, .. }
            | DurableRecord::Decided { instance, .. }
                if instance <= low => {}
            DurableRecord::Wrote {
                instance,
                regency,
                digest,
            } => {
                let slot = self.slots.entry(instance).or_default();
                if slot.written.len() >= WRITESET_MAX
                    && !slot.written.iter().any(|(_, d)| *d == digest)
                {
                    return Err(JournalError::WriteSetTooLarge(instance));
                }
                slot.voted_write = Some(regency);
                slot.note_written(regency, digest, WRITESET_MAX);
            }
            DurableRecord::Accepted {
                instance,
                regency,
                digest,
                batch,
            } => {
                let slot = self.slots.entry(instance).or_default();
                slot.accepted = Some((regency, digest, batch));
                slot.voted_accept = Some(regency);
            }
            DurableRecord::Decided {
                instance,
                digest,
                batch,
            } => {
                let slot = self.slots.entry(instance).or_default();
                let batch = match batch {
                    Some(b) => b,
                    None => slot
                        .accepted
                        .as_ref()
                        .filter(|(_, d, _)| *d == digest)
                        .map(|(_, _, b)| b.clone())
                        .ok_or(JournalError::DecidedWithoutBatch(instance))?,
                };
                slot.decided = Some((digest, batch));
            }
        }
        Ok(())
    }

    /// The shortest journal that rebuilds this state from any earlier one:
    /// the stable checkpoint, the regency, then each slot's votes and decision.
    pub fn image(&self) -> Vec<DurableRecord> {
        let mut out = vec![
            DurableRecord::Stable(self.stable.clone()),
            DurableRecord::Regency {
                regency: self.regency,
                synced_regency: self.synced_regency,
                synced_last: self.synced_last,
                stop_floor: self.stop_floor,
            },
        ];
        if self.rejoining {
            out.push(DurableRecord::Rejoining(true));
        }
        out.extend(
            self.incarnations
                .values()
                .cloned()
                .map(DurableRecord::Incarnation),
        );
        for (i, slot) in &self.slots {
            slot_records(*i, slot, &mut out);
        }
        out
    }
}

fn slot_records(i: Instance, slot: &Slot, out: &mut Vec<DurableRecord>) {
    for (regency, digest) in &slot.written {
        out.push(DurableRecord::Wrote {
            instance: i,
            regency: *regency,
            digest: *digest,
        });
    }
    if let Some((regency, digest, batch)) = &slot.accepted {
        out.push(DurableRecord::Accepted {
            instance: i,
            regency: *regency,
            digest: *digest,
            batch: batch.clone(),
        });
    }
    if let Some((digest, batch)) = &slot.decided {
        let accepted = slot.accepted.as_ref().is_some_and(|(_, d, _)| d == digest);
        out.push(DurableRecord::Decided {
            instance: i,
            digest: *digest,
            batch: (!accepted).then(|| batch.clone()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::ChainApp;
    use crate::message::{Replier, Request, RequestAuth};
    use crate::replica::genesis_durable;

    fn batch(seq: u64) -> Arc<Batch> {
        Arc::new(Batch::new(vec![Request {
            client: 7,
            seq,
            replier: Replier::All,
            op: vec![seq as u8; 5],
            auth: RequestAuth::Macs(vec![[1; 32]; 4]),
        }]))
    }

    fn records() -> Vec<DurableRecord> {
        let (a, b) = (batch(1), batch(2));
        vec![
            DurableRecord::Regency {
                regency: 2,
                synced_regency: 1,
                synced_last: 3,
                stop_floor: 4,
            },
            DurableRecord::Rejoining(true),
            DurableRecord::Incarnation(Incarnation {
                replica: 2,
                number: 9,
                tag: 11,
                sig: crate::crypto::Signature([3; 64]),
            }),
            DurableRecord::Wrote {
                instance: 4,
                regency: 1,
                digest: a.digest(),
            },
            DurableRecord::Wrote {
                instance: 4,
                regency: 2,
                digest: b.digest(),
            },
            DurableRecord::Accepted {
                instance: 4,
                regency: 2,
                digest: b.digest(),
                batch: b.clone(),
            },
            DurableRecord::Decided {
                instance: 4,
                digest: b.digest(),
                batch: None,
            },
            DurableRecord::Decided {
                instance: 5,
                digest: a.digest(),
                batch: Some(a),
            },
        ]
    }

    #[test]
    fn records_round_trip_and_an_image_rebuilds_the_state() {
        let mut d = genesis_durable(&ChainApp::default());
        for rec in records() {
            let mut w = Writer::new();
            rec.encode(&mut w);
            let bytes = w.finish();
            let mut r = Reader::new(&bytes);
            assert_eq!(DurableRecord::decode(&mut r).unwrap(), rec);
            r.finish().unwrap();
            d.apply(rec).unwrap();
        }
        assert_eq!(d.slots[&4].written.len(), 2);
        assert_eq!(d.slots[&4].voted_write, Some(2));
        assert!(d.slots[&4].decided.is_some() && d.slots[&5].decided.is_some());
        let mut rebuilt = genesis_durable(&ChainApp::default());
        for rec in d.image() {
            rebuilt.apply(rec).unwrap();
        }
        assert_eq!(rebuilt.image(), d.image());
        assert_eq!(rebuilt.regency, 2);
    }

    #[test]
    fn a_decision_by_a_batch_never_accepted_is_refused() {
        let mut d = genesis_durable(&ChainApp::default());
        let rec = DurableRecord::Decided {
            instance: 1,
            digest: [9; 32],
            batch: None,
        };
        assert_eq!(d.apply(rec), Err(JournalError::DecidedWithoutBatch(1)));
        let mut r = Reader::new(&[42]);
        assert!(DurableRecord::decode(&mut r).is_err(), "unknown kind");
    }
}
