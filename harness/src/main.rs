use clap::Parser;

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
