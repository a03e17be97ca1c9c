//! `bftbench keygen`: per-replica ed25519 keys and a cluster file.

use anyhow::bail;
use bft_net::cluster::{keygen, KeygenOptions};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Folder for cluster.toml, replica-<id>.key and clients.key.
    #[arg(long, default_value = "cluster")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 4)]
    pub replicas: usize,
    /// `bft` (n = 3f+1 replicas), `raft` (n ≥ 3) or `bare` (one unreplicated server).
    #[arg(long, default_value = "bft")]
    pub protocol: String,
    /// Client keys to generate (one per logical client).
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Replica i listens on base-port + i.
    #[arg(long, default_value_t = 7000)]
    pub base_port: u16,
    /// The replicas' addresses (host:port, in id order; names allowed),
    /// instead of --host, --base-port and --replicas.
    #[arg(long, value_delimiter = ',')]
    pub addrs: Vec<String>,
    /// Deterministic (test) keys instead of keys from the OS; never for real deployments.
    #[arg(long)]
    pub seed: Option<u64>,
}

pub fn run(mut a: KeygenArgs) -> anyhow::Result<i32> {
    if !a.addrs.is_empty() {
        if a.protocol == "bare" && a.addrs.len() != 1 {
            bail!("--addrs: bare runs one server, {} given", a.addrs.len());
        }
        a.replicas = a.addrs.len();
    }
    let replicas = match a.protocol.as_str() {
        "bare" => 1,
        "bft" if a.replicas < 4 || (a.replicas - 1) % 3 != 0 => {
            bail!(
                "--replicas {}: BFT needs n = 3f+1 (4, 7, 10, …)",
                a.replicas
            )
        }
        "bft" => a.replicas,
        "raft" if a.replicas < 3 => bail!("--replicas {}: Raft needs n ≥ 3", a.replicas),
        "raft" => a.replicas,
        p => bail!("--protocol {p}: expected bft, raft or bare"),
    };
    if a.base_port as usize + replicas > u16::MAX as usize {
        bail!("--base-port {}: the ports run past 65535", a.base_port);
    }
    let addrs = if a.addrs.is_empty() {
        (0..replicas)
            .map(|i| format!("{}:{}", a.host, a.base_port as usize + i))
            .collect()
    } else {
        a.addrs.clone()
    };
    let o = KeygenOptions {
        addrs,
        protocol: a.protocol.clone(),
        clients: a.clients,
        first_client_id: 1_000,
        seed: a.seed,
    };
    keygen(&a.out, &o)?.check(&a.out.join("cluster.toml"))?;
    println!(
        "wrote {} (secret keys with mode 0600 beside it)",
        a.out.join("cluster.toml").display()
    );
    Ok(0)
}
