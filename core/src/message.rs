//! Protocol messages, their canonical encoding, and the bytes each signature covers.
//!
//! The encoding is canonical (one byte string per value), so a batch digest is
//! the hash of its encoding and two replicas agree on digests byte for byte.

use crate::codec::{DecodeError, Reader, Writer};
use crate::crypto::{hash, Crypto, Digest, Mac, Signature, MAC_BYTES, SIGNATURE_BYTES};
use crate::limits::*;
use std::sync::{Arc, OnceLock};

pub type ReplicaId = u32;
pub type ClientId = u64;
/// BFT-SMaRt's "regency": the leader of regency r is replica r mod n.
pub type Regency = u64;
/// A consensus instance (sequence number in the total order), from 1.
pub type Instance = u64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestAuth {
    /// One MAC per replica, in replica order (PBFT's authenticator).
    Macs(Vec<Mac>),
    /// An ed25519 signature by the client.
    Signature(Signature),
}

/// Which replicas return a request's full result; the others return only its
/// digest (PBFT's reply optimisation, BFT-SMaRt's hashed replies). The client
/// still needs f+1 matching replies, one of them full. The client chooses,
/// and its authenticator covers the choice, so no replica can change it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replier {
    All,
    /// An id outside the cluster is the client's own loss: every replica then
    /// sends a digest, and only a retransmission (answered in full) completes.
    One(ReplicaId),
}

impl Replier {
    const ALL_WIRE: u32 = u32::MAX;

    pub fn sends_full(self, me: ReplicaId) -> bool {
        match self {
            Replier::All => true,
            Replier::One(r) => r == me,
        }
    }
    fn to_wire(self) -> u32 {
        match self {
            Replier::All => Self::ALL_WIRE,
            Replier::One(r) => r,
        }
    }
    fn from_wire(v: u32) -> Replier {
        if v == Self::ALL_WIRE {
            Replier::All
        } else {
            Replier::One(v)
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub client: ClientId,
    pub seq: u64,
    pub replier: Replier,
    pub op: Vec<u8>,
    pub auth: RequestAuth,
}

impl Request {
    /// The bytes a request's MACs or signature cover.
    pub fn auth_bytes(client: ClientId, seq: u64, replier: Replier, op: &[u8]) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(b"REQ");
        w.u64(client);
        w.u64(seq);
        w.u32(replier.to_wire());
        w.bytes(op);
        w.finish()
    }
    /// The bytes this request's authenticator must cover.
    pub fn signed_bytes(&self) -> Vec<u8> {
        Request::auth_bytes(self.client, self.seq, self.replier, &self.op)
    }
    pub fn id(&self) -> (ClientId, u64) {
        (self.client, self.seq)
    }
}

/// An ordered list of requests: the value of one consensus instance. An empty
/// batch is the no-op a new leader uses to fill a gap.
///
/// Its digest (SHA-256 of its encoding) is computed at most once: from the
/// received bytes when a PROPOSE frame is opened, else on first use. The
/// requests are immutable once the batch exists, so the cache cannot go stale.
#[derive(Clone, Default)]
pub struct Batch {
    requests: Vec<Request>,
    digest: OnceLock<Digest>,
}

impl Batch {
    pub fn new(requests: Vec<Request>) -> Batch {
        Batch {
            requests,
            digest: OnceLock::new(),
        }
    }
    pub fn requests(&self) -> &[Request] {
        &self.requests
    }
    /// Sets the digest of a just-decoded batch from the bytes it came from
    /// (`wire::open` hashed them to check a PROPOSE's MAC).
    pub(crate) fn preset_digest(&self, digest: Digest) {
        debug_assert_eq!(digest, self.encoded_digest(), "the encoding is canonical");
        let _ = self.digest.set(digest);
    }
    pub fn digest(&self) -> Digest {
        *self.digest.get_or_init(|| self.encoded_digest())
    }
    fn encoded_digest(&self) -> Digest {
        let mut w = Writer::with_capacity(self.encoded_len());
        encode_batch(&mut w, self);
        hash(&w.buf)
    }
    pub fn encoded_len(&self) -> usize {
        4 + self.requests.iter().map(request_encoded_len).sum::<usize>()
    }
}

/// Batches are equal when their requests are (the digest is derived from them).
impl PartialEq for Batch {
    fn eq(&self, other: &Batch) -> bool {
        self.requests == other.requests
    }
}
impl Eq for Batch {}

/// The requests only: whether the digest is cached yet must not change output.
impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("requests", &self.requests)
            .finish()
    }
}

pub fn request_encoded_len(r: &Request) -> usize {
    let auth = match &r.auth {
        RequestAuth::Macs(m) => 1 + 4 + m.len() * MAC_BYTES,
        RequestAuth::Signature(_) => 1 + SIGNATURE_BYTES,
    };
    8 + 8 + 4 + 4 + r.op.len() + auth
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub client: ClientId,
    pub seq: u64,
    pub result: Vec<u8>,
}

/// What a replica not chosen as the request's `Replier` returns: the hash of
/// the result it computed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyDigest {
    pub client: ClientId,
    pub seq: u64,
    pub digest: Digest,
}

/// 2f+1 signatures on CHECKPOINT(instance, state digest): a stable checkpoint.
/// Instance 0 is the genesis state and carries no signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointCert {
    pub instance: Instance,
    pub digest: Digest,
    pub sigs: Vec<(ReplicaId, Signature)>,
}

impl CheckpointCert {
    pub fn sign_bytes(instance: Instance, digest: &Digest) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(b"CHECKPOINT");
        w.u64(instance);
        w.raw(digest);
        w.finish()
    }
}

/// What one replica reports about one instance above its stable checkpoint
/// when it enters a new regency (the "state" of Cachin's Byzantine Paxos).
/// Nothing in it is a proof: the leader-change rule (`verify::plan_from`)
/// counts reports, and the STOPDATA signature makes them transferable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceReport {
    pub instance: Instance,
    /// The latest (regency, digest) for which this replica saw 2f+1 matching
    /// WRITEs and sent ACCEPT.
    pub accepted: Option<(Regency, Digest)>,
    /// Every digest this replica sent WRITE for, with the highest regency in
    /// which it did (complete: at most `Config::writeset_max`).
    pub written: Vec<(Regency, Digest)>,
}

/// What a replica knows when it enters a new regency: its stable checkpoint
/// and its reports on the instances above it, signed once. The batches of the
/// accepted digests travel beside it, bound by their digests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StopData {
    pub regency: Regency,
    pub from: ReplicaId,
    /// The sender's incarnation: a STOPDATA of an earlier one (a run whose
    /// state was lost) is a promise nobody keeps, and is refused.
    pub incarnation: u64,
    pub checkpoint: CheckpointCert,
    pub reports: Vec<InstanceReport>,
    pub sig: Signature,
}

impl StopData {
    pub fn sign_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(b"STOPDATA");
        encode_stop_data_unsigned(&mut w, self);
        w.finish()
    }
}

/// One run of a replica: 0 at genesis, raised (and signed by the replica)
/// each time it restarts without its durable state. Peers keep the highest
/// they have seen of each replica and refuse older runs' STOPDATA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incarnation {
    pub replica: ReplicaId,
    pub number: u64,
    /// Drawn at random by the run: two runs that got the same number (a
    /// clock set back) still differ, and the later one takes a higher number.
    pub tag: u64,
    /// The replica's signature over `sign_bytes` (none for number 0).
    pub sig: Signature,
}

impl Incarnation {
    pub fn genesis(replica: ReplicaId) -> Incarnation {
        Incarnation {
            replica,
            number: 0,
            tag: 0,
            sig: Signature([0; 64]),
        }
    }

    /// Run `number` of `replica`, signed with its key.
    pub fn signed(replica: ReplicaId, number: u64, tag: u64, crypto: &dyn Crypto) -> Incarnation {
        let mut inc = Incarnation {
            replica,
            number,
            tag,
            sig: Signature([0; 64]),
        };
        inc.sig = crypto.sign(&inc.sign_bytes());
        inc
    }

    pub fn sign_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(b"INCARNATION");
        w.u32(self.replica);
        w.u64(self.number);
        w.u64(self.tag);
        w.finish()
    }

    /// Signed by its replica (genesis needs no signature).
    pub fn valid(&self, crypto: &dyn Crypto) -> bool {
        self.number == 0 || crypto.verify_replica(self.replica, &self.sign_bytes(), &self.sig)
    }
}

/// A regency's synchronisation: 2f+1 or more STOPDATA and the batches the plan
/// derived from them needs. Valid whoever forwards it: its validity rests on
/// the signed proofs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncProof {
    pub regency: Regency,
    pub proofs: Vec<StopData>,
    pub batches: Vec<Arc<Batch>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateReply {
    pub nonce: u64,
    pub regency: Regency,
    /// The highest regency the replier installed or asked for with STOP
    /// (never below `regency`): a replica rejoining without its state waits
    /// for a regency this high before it votes (`Rejoin` in the replica).
    pub stop_floor: Regency,
    pub checkpoint: CheckpointCert,
    pub snapshot: Vec<u8>,
    /// Decided batches after the checkpoint, in instance order.
    pub suffix: Vec<(Instance, Arc<Batch>)>,
    /// The SYNC of the replier's regency, so a laggard can synchronise too.
    pub sync: Option<SyncProof>,
    /// The highest incarnation the replier knows of each replica (those
    /// above 0), so a replica that lost its state learns them again.
    pub incarnations: Vec<Incarnation>,
}

/// The digest replicas answer with for an executed request whose result
/// the client table evicted (`CLIENT_RESULTS_BYTES_MAX`): 2f+1 of them tell
/// the client its request ran and its result is gone. No result is known to
/// hash to it (that would be a SHA-256 preimage of all ones).
pub fn result_evicted_digest() -> Digest {
    [0xFF; 32]
}

/// Wire tags of the messages that carry signatures worth batch-verifying.
pub const TAG_REQUEST: u8 = 1;
pub const TAG_PROPOSE: u8 = 3;
pub const TAG_CHECKPOINT: u8 = 9;
const TAG_WRITE: u8 = 4;
/// Tags of the answers to clients (see `wire::reply_client`).
pub const TAG_REPLY: u8 = 2;
pub const TAG_REPLY_DIGEST: u8 = 13;
const TAG_UNVERIFIABLE: u8 = 14;
/// A request's authenticator kind: a signature (else a vector of MACs).
pub const AUTH_SIGNATURE: u8 = 1;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Reply(Reply),
    ReplyDigest(ReplyDigest),
    Propose {
        regency: Regency,
        instance: Instance,
        batch: Arc<Batch>,
    },
    /// Authenticated by its link MAC only: WRITEs are never shown to a third
    /// party (a leader change relies on signed STOPDATA instead).
    Write {
        regency: Regency,
        instance: Instance,
        digest: Digest,
    },
    Accept {
        regency: Regency,
        instance: Instance,
        digest: Digest,
    },
    Stop {
        regency: Regency,
    },
    /// A follower could not check these clients' requests (MACs only, its
    /// entry bad) in the leader's PROPOSE(regency, instance): f+1 such
    /// reports make the leader strike them too (`must_sign`).
    Unverifiable {
        regency: Regency,
        instance: Instance,
        clients: Vec<ClientId>,
    },
    StopData {
        data: StopData,
        /// The batches of the reports' accepted digests, in report order.
        batches: Vec<Arc<Batch>>,
    },
    Sync(SyncProof),
    Checkpoint {
        instance: Instance,
        digest: Digest,
        sig: Signature,
    },
    StateRequest {
        nonce: u64,
        from: Instance,
        /// The requester's current run: a reply proves the replier knows it.
        incarnation: Incarnation,
    },
    StateReply(StateReply),
    /// A Raft message (protobuf bytes) for the Raft baseline, inside our authenticated frame.
    Raft(Vec<u8>),
}

impl Message {
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Request(_) => "REQUEST",
            Message::Reply(_) => "REPLY",
            Message::ReplyDigest(_) => "REPLY-DIGEST",
            Message::Propose { .. } => "PROPOSE",
            Message::Write { .. } => "WRITE",
            Message::Accept { .. } => "ACCEPT",
            Message::Stop { .. } => "STOP",
            Message::Unverifiable { .. } => "UNVERIFIABLE",
            Message::StopData { .. } => "STOPDATA",
            Message::Sync(_) => "SYNC",
            Message::Checkpoint { .. } => "CHECKPOINT",
            Message::StateRequest { .. } => "STATE-REQUEST",
            Message::StateReply(_) => "STATE-REPLY",
            Message::Raft(_) => "RAFT",
        }
    }
}

// ---------------------------------------------------------------- encoding

fn encode_request(w: &mut Writer, r: &Request) {
    w.u64(r.client);
    w.u64(r.seq);
    w.u32(r.replier.to_wire());
    w.bytes(&r.op);
    match &r.auth {
        RequestAuth::Macs(macs) => {
            w.u8(0);
            w.len(macs.len());
            for m in macs {
                w.raw(m);
            }
        }
        RequestAuth::Signature(s) => {
            w.u8(AUTH_SIGNATURE);
            w.raw(&s.0);
        }
    }
}

fn decode_request(r: &mut Reader) -> Result<Request, DecodeError> {
    let client = r.u64()?;
    let seq = r.u64()?;
    let replier = Replier::from_wire(r.u32()?);
    let op = r.bytes("request op", OP_BYTES_MAX)?.to_vec();
    let auth = match r.u8()? {
        0 => {
            let n = r.len("authenticator", REPLICAS_MAX, MAC_BYTES)?;
            RequestAuth::Macs((0..n).map(|_| r.array()).collect::<Result<_, _>>()?)
        }
        AUTH_SIGNATURE => RequestAuth::Signature(Signature(r.array()?)),
        t => return Err(DecodeError::BadTag(t)),
    };
    Ok(Request {
        client,
        seq,
        replier,
        op,
        auth,
    })
}

pub fn encode_batch(w: &mut Writer, b: &Batch) {
    w.len(b.requests.len());
    for r in &b.requests {
        encode_request(w, r);
    }
}

pub(crate) fn decode_batch(r: &mut Reader) -> Result<Arc<Batch>, DecodeError> {
    let start = r.remaining();
    let n = r.len("batch", BATCH_REQUESTS_MAX, 21)?;
    let too_long = |used: usize| DecodeError::TooLong {
        what: "batch bytes",
        len: used,
        max: BATCH_BYTES_MAX,
    };
    let mut requests = Vec::with_capacity(n);
    for _ in 0..n {
        requests.push(decode_request(r)?);
        // Stop at the bound, not after decoding everything the frame holds.
        if start - r.remaining() > BATCH_BYTES_MAX {
            return Err(too_long(start - r.remaining()));
        }
    }
    Ok(Arc::new(Batch::new(requests)))
}

fn encode_sigs(w: &mut Writer, sigs: &[(ReplicaId, Signature)]) {
    w.len(sigs.len());
    for (id, s) in sigs {
        w.u32(*id);
        w.raw(&s.0);
    }
}

fn decode_sigs(r: &mut Reader) -> Result<Vec<(ReplicaId, Signature)>, DecodeError> {
    let n = r.len("certificate", CERT_ENTRIES_MAX, 4 + SIGNATURE_BYTES)?;
    (0..n)
        .map(|_| Ok((r.u32()?, Signature(r.array()?))))
        .collect()
}

pub(crate) fn encode_checkpoint_cert(w: &mut Writer, c: &CheckpointCert) {
    w.u64(c.instance);
    w.raw(&c.digest);
    encode_sigs(w, &c.sigs);
}

pub(crate) fn decode_checkpoint_cert(r: &mut Reader) -> Result<CheckpointCert, DecodeError> {
    Ok(CheckpointCert {
        instance: r.u64()?,
        digest: r.array()?,
        sigs: decode_sigs(r)?,
    })
}

fn encode_stop_data_unsigned(w: &mut Writer, s: &StopData) {
    w.u64(s.regency);
    w.u32(s.from);
    w.u64(s.incarnation);
    encode_checkpoint_cert(w, &s.checkpoint);
    w.len(s.reports.len());
    for rep in &s.reports {
        w.u64(rep.instance);
        match &rep.accepted {
            None => w.u8(0),
            Some((regency, digest)) => {
                w.u8(1);
                w.u64(*regency);
                w.raw(digest);
            }
        }
        w.len(rep.written.len());
        for (regency, digest) in &rep.written {
            w.u64(*regency);
            w.raw(digest);
        }
    }
}

fn decode_report(r: &mut Reader) -> Result<InstanceReport, DecodeError> {
    let instance = r.u64()?;
    let accepted = match r.u8()? {
        0 => None,
        1 => Some((r.u64()?, r.array()?)),
        t => return Err(DecodeError::BadTag(t)),
    };
    let n = r.len("written digests", WRITESET_MAX, 40)?;
    let written = (0..n)
        .map(|_| Ok((r.u64()?, r.array()?)))
        .collect::<Result<_, DecodeError>>()?;
    Ok(InstanceReport {
        instance,
        accepted,
        written,
    })
}

fn encode_stop_data(w: &mut Writer, s: &StopData) {
    encode_stop_data_unsigned(w, s);
    w.raw(&s.sig.0);
}

fn decode_stop_data(r: &mut Reader) -> Result<StopData, DecodeError> {
    let regency = r.u64()?;
    let from = r.u32()?;
    let incarnation = r.u64()?;
    let checkpoint = decode_checkpoint_cert(r)?;
    let n = r.len("stopdata reports", LOG_WINDOW_MAX as usize, 13)?;
    let reports = (0..n)
        .map(|_| decode_report(r))
        .collect::<Result<Vec<_>, DecodeError>>()?;
    Ok(StopData {
        regency,
        from,
        incarnation,
        checkpoint,
        reports,
        sig: Signature(r.array()?),
    })
}

pub fn encode_incarnation(w: &mut Writer, inc: &Incarnation) {
    w.u32(inc.replica);
    w.u64(inc.number);
    w.u64(inc.tag);
    w.raw(&inc.sig.0);
}

pub fn decode_incarnation(r: &mut Reader) -> Result<Incarnation, DecodeError> {
    Ok(Incarnation {
        replica: r.u32()?,
        number: r.u64()?,
        tag: r.u64()?,
        sig: Signature(r.array()?),
    })
}

fn encode_batches(w: &mut Writer, batches: &[Arc<Batch>]) {
    w.len(batches.len());
    for b in batches {
        encode_batch(w, b);
    }
}

fn decode_batches(r: &mut Reader) -> Result<Vec<Arc<Batch>>, DecodeError> {
    let n = r.len("batches", LOG_WINDOW_MAX as usize, 4)?;
    (0..n).map(|_| decode_batch(r)).collect()
}

fn encode_sync(w: &mut Writer, s: &SyncProof) {
    w.u64(s.regency);
    w.len(s.proofs.len());
    for p in &s.proofs {
        encode_stop_data(w, p);
    }
    encode_batches(w, &s.batches);
}

fn decode_sync(r: &mut Reader) -> Result<SyncProof, DecodeError> {
    let regency = r.u64()?;
    let n = r.len("sync proofs", REPLICAS_MAX, 120)?;
    let proofs = (0..n)
        .map(|_| decode_stop_data(r))
        .collect::<Result<_, _>>()?;
    Ok(SyncProof {
        regency,
        proofs,
        batches: decode_batches(r)?,
    })
}

/// About the encoded size of `m`: exact for the messages whose size grows
/// with their payload (requests, replies, proposals), a small guess for the
/// fixed-size rest; encoders reserve it to avoid growing a buffer by copies.
pub fn encoded_len_hint(m: &Message) -> usize {
    let payload = match m {
        Message::Request(r) => request_encoded_len(r),
        Message::Reply(r) => 8 + 8 + 4 + r.result.len(),
        Message::Propose { batch, .. } => 8 + 8 + batch.encoded_len(),
        Message::Raft(b) => 4 + b.len(),
        _ => 96,
    };
    1 + payload
}

pub fn encode_message(w: &mut Writer, m: &Message) {
    match m {
        Message::Request(req) => {
            w.u8(TAG_REQUEST);
            encode_request(w, req);
        }
        Message::Reply(rep) => {
            w.u8(TAG_REPLY);
            w.u64(rep.client);
            w.u64(rep.seq);
            w.bytes(&rep.result);
        }
        Message::ReplyDigest(rep) => {
            w.u8(TAG_REPLY_DIGEST);
            w.u64(rep.client);
            w.u64(rep.seq);
            w.raw(&rep.digest);
        }
        Message::Propose {
            regency,
            instance,
            batch,
        } => {
            w.u8(TAG_PROPOSE);
            w.u64(*regency);
            w.u64(*instance);
            encode_batch(w, batch);
        }
        Message::Write {
            regency,
            instance,
            digest,
        } => {
            w.u8(TAG_WRITE);
            w.u64(*regency);
            w.u64(*instance);
            w.raw(digest);
        }
        Message::Accept {
            regency,
            instance,
            digest,
        } => {
            w.u8(5);
            w.u64(*regency);
            w.u64(*instance);
            w.raw(digest);
        }
        Message::Stop { regency } => {
            w.u8(6);
            w.u64(*regency);
        }
        Message::Unverifiable {
            regency,
            instance,
            clients,
        } => {
            w.u8(TAG_UNVERIFIABLE);
            w.u64(*regency);
            w.u64(*instance);
            w.len(clients.len());
            for c in clients {
                w.u64(*c);
            }
        }
        Message::StopData { data, batches } => {
            w.u8(7);
            encode_stop_data(w, data);
            encode_batches(w, batches);
        }
        Message::Sync(s) => {
            w.u8(8);
            encode_sync(w, s);
        }
        Message::Checkpoint {
            instance,
            digest,
            sig,
        } => {
            w.u8(TAG_CHECKPOINT);
            w.u64(*instance);
            w.raw(digest);
            w.raw(&sig.0);
        }
        Message::StateRequest {
            nonce,
            from,
            incarnation,
        } => {
            w.u8(10);
            w.u64(*nonce);
            w.u64(*from);
            encode_incarnation(w, incarnation);
        }
        Message::StateReply(s) => {
            w.u8(11);
            w.u64(s.nonce);
            w.u64(s.regency);
            w.u64(s.stop_floor);
            encode_checkpoint_cert(w, &s.checkpoint);
            w.bytes(&s.snapshot);
            w.len(s.suffix.len());
            for (i, b) in &s.suffix {
                w.u64(*i);
                encode_batch(w, b);
            }
            match &s.sync {
                None => w.u8(0),
                Some(sync) => {
                    w.u8(1);
                    encode_sync(w, sync);
                }
            }
            w.len(s.incarnations.len());
            for inc in &s.incarnations {
                encode_incarnation(w, inc);
            }
        }
        Message::Raft(b) => {
            w.u8(12);
            w.bytes(b);
        }
    }
}

pub fn decode_message(r: &mut Reader) -> Result<Message, DecodeError> {
    let m = match r.u8()? {
        TAG_REQUEST => Message::Request(decode_request(r)?),
        TAG_REPLY => Message::Reply(Reply {
            client: r.u64()?,
            seq: r.u64()?,
            result: r.bytes("reply", RESULT_BYTES_MAX)?.to_vec(),
        }),
        TAG_REPLY_DIGEST => Message::ReplyDigest(ReplyDigest {
            client: r.u64()?,
            seq: r.u64()?,
            digest: r.array()?,
        }),
        TAG_PROPOSE => Message::Propose {
            regency: r.u64()?,
            instance: r.u64()?,
            batch: decode_batch(r)?,
        },
        TAG_WRITE => Message::Write {
            regency: r.u64()?,
            instance: r.u64()?,
            digest: r.array()?,
        },
        5 => Message::Accept {
            regency: r.u64()?,
            instance: r.u64()?,
            digest: r.array()?,
        },
        6 => Message::Stop { regency: r.u64()? },
        TAG_UNVERIFIABLE => {
            let regency = r.u64()?;
            let instance = r.u64()?;
            let n = r.len("unverifiable clients", BATCH_REQUESTS_MAX, 8)?;
            let clients = (0..n).map(|_| r.u64()).collect::<Result<_, _>>()?;
            Message::Unverifiable {
                regency,
                instance,
                clients,
            }
        }
        7 => Message::StopData {
            data: decode_stop_data(r)?,
            batches: decode_batches(r)?,
        },
        8 => Message::Sync(decode_sync(r)?),
        TAG_CHECKPOINT => Message::Checkpoint {
            instance: r.u64()?,
            digest: r.array()?,
            sig: Signature(r.array()?),
        },
        10 => Message::StateRequest {
            nonce: r.u64()?,
            from: r.u64()?,
            incarnation: decode_incarnation(r)?,
        },
        11 => {
            let nonce = r.u64()?;
            let regency = r.u64()?;
            let stop_floor = r.u64()?;
            let checkpoint = decode_checkpoint_cert(r)?;
            let snapshot = r.bytes("snapshot", SNAPSHOT_BYTES_MAX)?.to_vec();
            let n = r.len("state suffix", STATE_SUFFIX_MAX, 12)?;
            let suffix = (0..n)
                .map(|_| Ok((r.u64()?, decode_batch(r)?)))
                .collect::<Result<_, DecodeError>>()?;
            let sync = match r.u8()? {
                0 => None,
                1 => Some(decode_sync(r)?),
                t => return Err(DecodeError::BadTag(t)),
            };
            let n = r.len("incarnations", REPLICAS_MAX, 84)?;
            let incarnations = (0..n)
                .map(|_| decode_incarnation(r))
                .collect::<Result<_, DecodeError>>()?;
            Message::StateReply(StateReply {
                nonce,
                regency,
                stop_floor,
                checkpoint,
                snapshot,
                suffix,
                sync,
                incarnations,
            })
        }
        12 => Message::Raft(r.bytes("raft message", FRAME_BYTES_MAX)?.to_vec()),
        t => return Err(DecodeError::BadTag(t)),
    };
    Ok(m)
}
