//! The `countersign` command line: the local dev stack, the worker, runs and
//! approvals. `main.rs` only parses arguments; the pieces live here so the
//! end-to-end tests can use the same dev-server harness as `countersign dev`.

pub mod cli;
pub mod demo;
pub mod devserver;
pub mod keys;
pub mod logging;
#[cfg(feature = "otel")]
pub mod otel;
pub mod output;
pub mod payloads;
pub mod policy_check;
pub mod worker;
