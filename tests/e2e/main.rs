mod child_runs;
mod examples;
mod gated_runs;
mod harness;
mod mcp_adapter;
mod operators;
mod policy_rules;
mod tool_kinds;
