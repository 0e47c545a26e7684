//! The `countersign` binary: parses arguments and runs [`countersign::cli`].

use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = countersign::cli::Cli::parse();
    // Kept to the end: with the `otel` feature it flushes exported spans.
    let _logging = match countersign::logging::init(cli.log_format) {
        Ok(logging) => logging,
        Err(e) => return report(&e),
    };
    match countersign::cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(&e),
    }
}

/// Prints an error as one line (its causes joined), never the backtrace
/// that `RUST_BACKTRACE=1` would add: an error here is the user's to fix.
/// Bugs panic, and panics keep their backtraces; `COUNTERSIGN_BACKTRACE=1`
/// asks for the error's backtrace too.
fn report(error: &anyhow::Error) -> ExitCode {
    eprintln!("error: {error:#}");
    if std::env::var_os("COUNTERSIGN_BACKTRACE").is_some_and(|v| v == "1") {
        eprintln!("{}", error.backtrace());
    }
    ExitCode::FAILURE
}
