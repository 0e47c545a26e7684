//! Countersign's wire types, generated from `proto/countersign/v1/*.proto`.
//!
//! Every message implements serde with the proto3 JSON mapping (camelCase
//! field names, enums as their value names, `Struct` as a plain JSON object),
//! so the JSON an operator types into `temporal workflow signal` decodes as is.

#![allow(missing_docs)]

/// `countersign.v1`: the generated messages.
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/countersign.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/countersign.v1.serde.rs"));
}

pub mod contract;
pub mod inbox;
mod json;
pub mod signing;

pub use json::{JsonError, arguments_sha256, canonical_json, json_to_struct, struct_to_json};
pub use v1::*;
