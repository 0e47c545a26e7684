//! Countersign's approval policy: which tool calls need a human decision.
//!
//! Pure data and functions, evaluated in deterministic workflow code: nothing
//! here does I/O (except [`agent::AgentDefinition::from_file`], which the CLI
//! calls before a run starts), and nothing the model says reaches it except
//! the tool name it asked for.

pub mod agent;
pub mod catalog;
pub mod condition;
mod evaluate;
pub mod run;
pub mod schema;
pub mod sources;

pub use evaluate::{EffectClass, RunMode, ToolPolicy, Verdict, apply_condition, evaluate};
