mod child_runs;
mod gated_runs;
mod harness;
mod mcp_adapter;
mod operators;
mod tool_kinds;
