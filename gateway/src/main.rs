//! The `portcullis` binary: parse the command line, run it, and turn an error into a
//! message and an exit code.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator (BENCHMARKS.md, sixth run).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // One crypto provider for the whole process, before anything touches rustls.
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        eprintln!("error: a TLS crypto provider was already installed");
        return ExitCode::FAILURE;
    }
    portcullis_gateway::ops::telemetry::init(&|name| std::env::var(name).ok());
    let cli = portcullis_gateway::cli::Cli::parse();
    match portcullis_gateway::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
