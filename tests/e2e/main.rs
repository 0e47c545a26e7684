mod gated_runs;
mod harness;
