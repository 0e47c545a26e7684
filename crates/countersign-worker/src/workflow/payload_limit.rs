//! The one home of the payload limits a run keeps, so that no run is ever
//! left failing workflow tasks on payload size.
//!
//! Temporal refuses a payload over its blob size limit (2 MiB by default,
//! the server's `limit.blobSize.error`): a workflow task whose commands carry
//! one fails with `WorkflowTaskFailedCausePayloadsTooLarge`, and fails again
//! on every retry, so the run would show `Running` forever. The run measures
//! each payload that can grow (the transcript in a model turn's input, the
//! state carried by continue-as-new, the final result, a call's arguments)
//! before it sends the command, and ends as Failed with a message that names
//! the payload, its size, the limit and the setting to change instead.
//!
//! Measuring is pure: the payload's JSON is counted, never kept, and no
//! I/O happens, so it is deterministic workflow code.

use serde::Serialize;

/// The largest payload a run sends in a command: 1.5 MiB, a margin under
/// Temporal's default 2 MiB blob limit for the payload's metadata and the
/// other fields of the same request.
pub const MAX_PAYLOAD_BYTES: usize = 1536 * 1024;

/// The largest arguments (as JSON) a model's tool call may have. Arguments
/// travel in the approval, the notification, the tool's activity or a
/// child's input; a call over this is refused with an error result for the
/// model, before any approval opens or anything runs.
pub const MAX_CALL_ARGUMENTS_BYTES: usize = 256 * 1024;

/// Runs that meet an oversized payload record this marker (only then: a
/// run that never does keeps the commands it always had), so histories of
/// runs recorded before the limit replay, and a run left stuck on a payload
/// by an older worker ends as Failed once this version replays it.
pub(super) const PATCH_PAYLOAD_LIMIT: &str = "payload-limit";

/// Runs whose worker has a payload store keep their transcript's start in
/// it (`countersign_payloads::transcript`): each model turn's input carries
/// a reference and the entries new since the last turn, not the whole
/// transcript. Recorded by every such run from this version on.
pub(super) const PATCH_TRANSCRIPT_STORE: &str = "transcript-store";

/// A run that keeps its transcript in the payload store continues as new
/// once its turns put this much into its history (model turn inputs and
/// answers, tool results: 512 KiB), so each run's history stays well under
/// a megabyte however long the agent works. The next run carries the
/// transcript's reference, not the transcript.
pub const CONTINUE_AS_NEW_AFTER_BYTES: usize = 512 * 1024;

/// The largest payload a run sends when its worker has a payload store: the
/// store's limit less 1 MiB for the payload's metadata (a payload over the
/// store's threshold travels as a reference of a few hundred bytes; one the
/// store refused would fail the workflow task).
pub const MAX_STORED_PAYLOAD_BYTES: usize =
    countersign_payloads::MAX_STORED_PAYLOAD_BYTES - 1024 * 1024;

/// The run's limit for one payload: Temporal's (with a margin) without a
/// payload store, the store's with one.
pub fn limit(payload_store: bool) -> usize {
    if payload_store {
        MAX_STORED_PAYLOAD_BYTES
    } else {
        MAX_PAYLOAD_BYTES
    }
}

/// The setting that lets large payloads leave the history.
pub const PAYLOAD_STORE_SETTING: &str = "--payload-store URL (COUNTERSIGN_PAYLOAD_STORE)";

/// Counts bytes without keeping them.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The size of `value` as the SDK's JSON payload converter serializes it
/// (the payload's data; its metadata is a few dozen bytes more). A value
/// that cannot be serialized counts as `usize::MAX`: it could not be sent.
pub fn serialized_size<T: Serialize + ?Sized>(value: &T) -> usize {
    let mut counter = Counter(0);
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => usize::MAX,
    }
}

/// Why the run ends: `what` would be sent as a `size`-byte payload, by a
/// run whose worker has a payload store or not.
pub(super) fn too_large(what: &str, size: usize, payload_store: bool) -> String {
    if payload_store {
        return format!(
            "payload too large: {what} would be {size} bytes, over the payload store's limit of \
             {MAX_STORED_PAYLOAD_BYTES} bytes for one payload. Give the agent fewer turns \
             (max_turns) or smaller tool results"
        );
    }
    format!(
        "payload too large: {what} would be {size} bytes, over the run's limit of {MAX_PAYLOAD_BYTES} bytes \
         for one payload (Temporal refuses payloads over its blob size limit, 2 MiB by default). \
         Run the worker with a payload store, {PAYLOAD_STORE_SETTING}, so large payloads leave the \
         history, or give the agent fewer turns (max_turns) or smaller tool results"
    )
}

/// Why a call is refused: its arguments are `size` bytes.
pub(super) fn arguments_too_large(size: usize) -> String {
    format!(
        "the call's arguments are {size} bytes of JSON, over the limit of {MAX_CALL_ARGUMENTS_BYTES}; \
         the tool did not run. Send less at once."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_is_the_json_length() {
        let value = serde_json::json!({"a": "x".repeat(100), "b": [1, 2, 3]});
        assert_eq!(
            serialized_size(&value),
            serde_json::to_vec(&value).unwrap().len()
        );
    }

    #[test]
    fn messages_name_the_payload_size_limit_and_setting() {
        let message = too_large("the model_turn activity's input", 2_000_000, false);
        assert!(message.contains("model_turn"), "{message}");
        assert!(message.contains("2000000 bytes"), "{message}");
        assert!(
            message.contains(&MAX_PAYLOAD_BYTES.to_string()),
            "{message}"
        );
        assert!(message.contains("--payload-store"), "{message}");
        assert!(message.contains("COUNTERSIGN_PAYLOAD_STORE"), "{message}");
        let stored = too_large("the run's result", 70_000_000, true);
        assert!(
            stored.contains(&MAX_STORED_PAYLOAD_BYTES.to_string()),
            "{stored}"
        );
    }

    #[test]
    fn the_limit_leaves_a_margin_under_temporals() {
        const TEMPORAL_BLOB_LIMIT: usize = 2 * 1024 * 1024;
        const {
            assert!(MAX_PAYLOAD_BYTES + 256 * 1024 <= TEMPORAL_BLOB_LIMIT);
            assert!(MAX_CALL_ARGUMENTS_BYTES < MAX_PAYLOAD_BYTES);
            assert!(MAX_PAYLOAD_BYTES < MAX_STORED_PAYLOAD_BYTES);
        }
    }
}
