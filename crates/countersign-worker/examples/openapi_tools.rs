//! Times `tools::openapi::operations` on a document and prints the tools.
//!
//! ```text
//! cargo run --release -p countersign-worker --example openapi_tools -- \
//!     DOCUMENT [OPERATION_ID ...]
//! ```
//!
//! Reads DOCUMENT (JSON or YAML) once, then turns it into tools three times
//! (as the API `github`, with the operation ids as the `operations`
//! allow-list when any are given) and prints, on standard error, the
//! document's size, the fastest of the three runs, the number of tools and
//! the size of their JSON; the tools' JSON goes to standard output.
//! `scripts/github-openapi.sh` uses it on GitHub's document.

use countersign_policy::sources::OpenApiSource;
use countersign_worker::tools::openapi::operations;
use serde_json::json;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: openapi_tools DOCUMENT [OPERATION_ID ...]");
        return ExitCode::from(2);
    };
    let selected: Vec<String> = args.collect();
    let document = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("cannot read {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut config = json!({
        "name": "github",
        "spec": path,
        "base_url": "http://127.0.0.1:4010",
    });
    if !selected.is_empty() {
        config["operations"] = json!(selected);
    }
    let api: OpenApiSource = serde_json::from_value(config).expect("a valid configuration");

    let mut fastest = Duration::MAX;
    let mut tools = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        match operations(&api, &document) {
            Ok(found) => tools = found,
            Err(e) => {
                eprintln!("operations() refused the document: {e}");
                return ExitCode::FAILURE;
            }
        }
        fastest = fastest.min(started.elapsed());
    }
    let text = serde_json::to_string(&tools).expect("tools serialize");
    eprintln!(
        "document: {} bytes; operations(): {:.1} ms (fastest of 3); {} tools; their JSON: {} bytes; `$ref`s left: {}",
        document.len(),
        fastest.as_secs_f64() * 1000.0,
        tools.len(),
        text.len(),
        text.matches("\"$ref\"").count(),
    );
    println!("{text}");
    ExitCode::SUCCESS
}
