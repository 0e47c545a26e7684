//! The `countersign` binary: parses arguments and runs [`countersign::cli`].

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = countersign::cli::Cli::parse();
    // Kept to the end: with the `otel` feature it flushes exported spans.
    let _logging = countersign::logging::init(cli.log_format)?;
    countersign::cli::run(cli).await
}
