//! countersign-worker
