//! The `countersign` binary: parses arguments and runs [`countersign::cli`].

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("COUNTERSIGN_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .init();
    countersign::cli::run(countersign::cli::Cli::parse()).await
}
