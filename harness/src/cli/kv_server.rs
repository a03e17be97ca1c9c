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
    /// Stop when standard input closes.
    #[arg(long)]
    pub exit_on_stdin_eof: bool,
}

pub fn run(a: KvServerArgs) -> anyhow::Result<i32> {
    let listener =
        std::net::TcpListener::bind(&a.listen).with_context(|| format!("--listen {}", a.listen))?;
    let stop = super::report::stop_on_stdin_eof(a.exit_on_stdin_eof);
    let mut app = KvApp::new();
    serve_app(listener, &mut app, &stop)?;
    eprintln!("kv-server stopped: {} records", app.len());
    Ok(0)
}
