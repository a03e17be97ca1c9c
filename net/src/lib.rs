//! `bft-net`: sockets, framing, cluster files and the event loops that pump the sans-IO core.

pub mod bft_wal;
pub mod client_loop;
pub mod cluster;
pub mod frame;
pub mod raft_engine;
pub mod raft_store;
pub mod raft_wal;
pub mod remote_app;
pub mod replica_loop;
pub mod uring;
pub mod verify_pool;
pub mod wal;
