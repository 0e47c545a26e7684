//! Countersign's approval policy: which tool calls need a human decision.
//!
//! Pure data and functions, evaluated in deterministic workflow code: nothing
//! here does I/O (except [`agent::AgentFile::from_file`], which a worker
//! calls to load its agent registry), and nothing the model says reaches it
//! except the tool name it asked for and its arguments. [`Agent::new`] is the
//! one constructor of a validated agent and [`Agent::gate`] the one place a
//! call's gate is decided.

pub mod agent;
pub mod catalog;
pub mod condition;
mod evaluate;
pub mod run;
pub mod schema;
pub mod sources;
mod validated;

pub use evaluate::{EffectClass, RunMode, ToolPolicy, Verdict, apply_condition, evaluate};
pub use validated::{Agent, Gate};
