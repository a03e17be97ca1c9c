//! Test-only adversaries for real processes: a replica whose outgoing
//! frames are rewritten by the simulator's Byzantine behaviours, so a
//! real-process test can face a Byzantine leader. Started only by the
//! hidden `bftbench replica --adversary-for-tests MODE` flag; the honest
//! replica inside is unchanged code.

use crate::sim::slow_leader::{SlowLeader, SlowMode};
use bft_core::crypto::{Crypto, Peer};
use bft_core::message::{ClientId, ReplicaId};
use bft_core::replica::Replica;
use bft_core::Time;
use bft_net::replica_loop::Engine;

/// `stale-leader`: while it leads, each PROPOSE, once its first request has
/// run, carries that request instead of what it was asked to order;
/// `censoring-leader`: it leaves one client's requests out.
pub fn parse(mode: &str) -> anyhow::Result<SlowMode> {
    match mode {
        "stale-leader" => Ok(SlowMode::Stale),
        "censoring-leader" => Ok(SlowMode::Censor),
        _ => anyhow::bail!("--adversary-for-tests {mode}: one of stale-leader, censoring-leader"),
    }
}

pub struct ByzantineLeader {
    inner: Replica,
    rewrite: SlowLeader,
    crypto: Box<dyn Crypto + Send>,
    n: usize,
}

impl ByzantineLeader {
    /// `censored`: the client a censoring leader leaves out.
    pub fn new(
        inner: Replica,
        mode: SlowMode,
        crypto: Box<dyn Crypto + Send>,
        censored: ClientId,
    ) -> Self {
        let n = inner.config().n;
        ByzantineLeader {
            inner,
            rewrite: SlowLeader::new(mode, censored),
            crypto,
            n,
        }
    }

    pub fn replica(&self) -> &Replica {
        &self.inner
    }

    /// PROPOSEs it rewrote.
    pub fn rewritten(&self) -> u64 {
        self.rewrite.rewritten
    }
}

impl Engine for ByzantineLeader {
    fn id(&self) -> ReplicaId {
        Engine::id(&self.inner)
    }
    fn handle_message(&mut self, now: Time, frame: &[u8]) {
        Engine::handle_message(&mut self.inner, now, frame)
    }
    fn handle_timeout(&mut self, now: Time) {
        Engine::handle_timeout(&mut self.inner, now)
    }
    fn poll_timeout(&self) -> Option<Time> {
        Engine::poll_timeout(&self.inner)
    }
    fn poll_send(&mut self) -> Option<(Peer, Vec<u8>)> {
        loop {
            let (to, frame) = Engine::poll_send(&mut self.inner)?;
            if matches!(to, Peer::Client(_)) {
                return Some((to, frame));
            }
            let inner = &self.inner;
            let ran = |c, s| inner.client_last_seq(c).is_some_and(|l| l >= s);
            if let Some(f) = self
                .rewrite
                .rewrite(&frame, to, self.n, self.crypto.as_ref(), &ran)
            {
                return Some((to, f));
            }
        }
    }
    fn rejected(&self) -> u64 {
        Engine::rejected(&self.inner)
    }
    fn authenticated_client(&self) -> Option<ClientId> {
        Engine::authenticated_client(&self.inner)
    }
}
