//! `bft-core`: BFT-SMaRt's replication protocol as a deterministic, sans-IO
//! state machine.
//!
//! The core does no I/O, reads no clock, spawns no thread and draws randomness
//! only from seeds it is given. Time comes in as an argument ([`Time`]), frames
//! come in as byte slices, and everything the core wants done comes out of
//! `poll_output` / `poll_timeout`. The same code therefore runs under the
//! deterministic simulator (`bft-harness`) and under the network event loop.
//!
//! ```
//! use bft_core::{app::ChainApp, config::Config, crypto::{Peer, SimCrypto}, replica::Replica};
//! let cfg = Config::new(4, 0);
//! let crypto = Box::new(SimCrypto::new(Peer::Replica(0), [7; 32], 4));
//! let mut r = Replica::new(cfg, crypto, Box::new(ChainApp::default()), 1).unwrap();
//! r.handle_timeout(bft_core::time::Time(1_000));
//! while let Some(_out) = r.poll_output() { /* send frames, deliver replies */ }
//! assert_eq!(r.last_executed(), 0);
//! ```

pub mod app;
pub mod bare;
pub mod client;
pub mod codec;
pub mod config;
pub mod crypto;
pub mod limits;
pub mod message;
pub mod preverify;
pub mod replica;
pub mod rng;
pub mod time;
pub mod wire;

pub use time::{Span, Time};
