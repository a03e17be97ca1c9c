use clap::Parser;

// glibc's malloc took about a quarter of all user CPU in a replica at 64
// clients (frames, requests and replies are short-lived buffers of 100 B–64 KiB
// freed on another code path than the one that allocated them); mimalloc's
// thread-local free lists cut that (README, "What limits the figures").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = bft_harness::cli::Cli::parse();
    match bft_harness::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::exit(2);
        }
    }
}
