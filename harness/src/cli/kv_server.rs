//! `bftbench kv-server`: the key-value App in its own process (BFT-DEP's
//! separated execution), serving the replica that connects to it.

use anyhow::Context;
use bft_net::remote_app::serve_app;
use bft_workloads::kv::KvApp;
use clap::Args;

#[derive(Args, Debug)]
pub struct KvServerArgs {
    /// Address to listen on (the replica connects here).
    #[arg(long)]
    pub listen: String,
    /// Serve the control channel on stdin/stdout: a `stats` line is answered
    /// with this process's CPU, peak memory and bytes; end of input stops it.
    #[arg(long, alias = "exit-on-stdin-eof")]
    pub control_stdio: bool,
}

pub fn run(a: KvServerArgs) -> anyhow::Result<i32> {
    let listener =
        std::net::TcpListener::bind(&a.listen).with_context(|| format!("--listen {}", a.listen))?;
    let stop = crate::control::serve(a.control_stdio);
    let mut app = KvApp::new();
    serve_app(listener, &mut app, &stop)?;
    eprintln!("kv-server stopped: {} records", app.len());
    Ok(0)
}
