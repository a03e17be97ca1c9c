//! Named bounds on everything a peer can make the core hold.
//!
//! Each bound is checked where input is decoded (so an oversized message is
//! dropped before it is allocated) and asserted where state grows.

/// Largest cluster the core accepts (n = 3f + 1 ≤ 64).
pub const REPLICAS_MAX: usize = 64;
/// Largest frame the codec decodes; checked before any allocation.
pub const FRAME_BYTES_MAX: usize = 64 << 20;
/// Largest client operation payload.
pub const OP_BYTES_MAX: usize = 64 << 10;
/// Largest result payload in a reply (a YCSB scan returns many records).
pub const RESULT_BYTES_MAX: usize = 256 << 10;
/// Largest number of requests in one batch.
pub const BATCH_REQUESTS_MAX: usize = 4096;
/// Largest encoded batch.
pub const BATCH_BYTES_MAX: usize = 4 << 20;
/// Largest pipeline depth (consensus instances in flight).
pub const PIPELINE_MAX: u64 = 64;
/// Largest checkpoint interval, in instances.
pub const CHECKPOINT_INTERVAL_MAX: u64 = 4096;
/// Instances a replica keeps above its last stable checkpoint (watermark window).
/// A message for an instance beyond the window is dropped.
pub const LOG_WINDOW_MAX: u64 = 2 * CHECKPOINT_INTERVAL_MAX;
/// Requests waiting to be ordered at one replica; beyond it new requests are dropped.
pub const PENDING_REQUESTS_MAX: usize = 64 * 1024;
/// Forwarded requests a replica could not authenticate itself, kept while
/// it counts their forwarders (f+1 vouch for one).
pub const FORWARDED_MAX: usize = 4096;
/// Distinct clients a replica tracks (reply cache entries).
pub const CLIENTS_MAX: usize = 1 << 16;
/// Largest App snapshot carried by state transfer.
pub const SNAPSHOT_BYTES_MAX: usize = 48 << 20;
/// How far ahead of its current regency a replica records STOP votes.
pub const REGENCY_LOOKAHEAD_MAX: u64 = 16;
/// Entries in a certificate (signatures), at most one per replica.
pub const CERT_ENTRIES_MAX: usize = REPLICAS_MAX;
/// Digests one replica can report having written at one instance (its
/// write-set), for any cluster size: the codec's bound. The bound that holds
/// in a cluster of n is n + 1 (`Config::writeset_max`): a replica writes a
/// leader's fresh value only where it has written nothing else, so every
/// value a correct replica writes there is the no-op or some correct
/// replica's first (see ARCHITECTURE.md, "Leader change"). Write-sets are
/// therefore complete; none is ever cut short.
pub const WRITESET_MAX: usize = REPLICAS_MAX + 1;
/// Exponent cap for timer back-off (timeout × 2^k).
pub const BACKOFF_EXP_MAX: u32 = 6;
/// State-transfer tries back off less: 2^3 × `state_transfer_timeout` (4 s
/// at the default 500 ms) carries a 32 MiB snapshot over 100 Mbit/s (2.7 s),
/// while a rejoiner keeps asking often enough.
pub const TRANSFER_BACKOFF_EXP_MAX: u32 = 3;
/// Largest decided-log suffix one state-transfer reply carries.
pub const STATE_SUFFIX_MAX: usize = LOG_WINDOW_MAX as usize;
/// PROPOSEs buffered while waiting for the SYNC of their regency.
pub const EARLY_PROPOSALS_MAX: usize = PIPELINE_MAX as usize;
/// Bytes of batches a leader change may have to carry (one per instance of the
/// log window): `2 × checkpoint_interval × batch_max_bytes` must stay within it,
/// so STOPDATA and SYNC always fit in a frame.
pub const LEADER_CHANGE_BATCH_BYTES_MAX: usize = FRAME_BYTES_MAX / 2;
/// Signature checks one event-loop turn may batch-verify ahead of the core.
pub const PREVERIFIED_MAX: usize = 16 * 1024;
/// Bytes of results the replicated client table keeps to answer retransmissions.
pub const CLIENT_RESULTS_BYTES_MAX: usize = 8 << 20;

// A snapshot is the App's state plus the client table; keep their sum within
// what state transfer carries (the KV App holds at most 32 MiB).
const _: () =
    assert!(CLIENT_RESULTS_BYTES_MAX + CLIENTS_MAX * 40 + (32 << 20) < SNAPSHOT_BYTES_MAX);
/// Clients one replica remembers having struck (`replica::must_sign`).
pub const STRUCK_CLIENTS_MAX: usize = 4096;
/// New strikes one replica makes per regency.
pub const STRIKES_PER_REGENCY: usize = 256;
/// A struck client must sign for `STRIKE_TIMEOUTS` request timeouts × 2^k
/// (its k-th strike; k capped at `STRIKE_EXP_MAX`): far longer than the
/// leader change its request caused.
pub const STRIKE_TIMEOUTS: u64 = 32;
pub const STRIKE_EXP_MAX: u32 = 6;
