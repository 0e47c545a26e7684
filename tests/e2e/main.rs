mod gated_runs;
mod harness;
mod operators;
