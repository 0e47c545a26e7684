//! countersign-approvals
