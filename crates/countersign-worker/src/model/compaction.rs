//! A conversation longer than the model's context, made to fit: a pure,
//! deterministic function of the transcript and the budget, so a retried
//! turn sends the same request.
//!
//! The user's first message and the latest turn (the last assistant entry
//! and the tool results after it) are always sent as they are. Past the
//! budget, the contents of older tool results are replaced by a short
//! placeholder, oldest first, until the conversation fits; if that is not
//! enough, older assistant messages too. Every message stays in place (tool
//! calls keep their results, so the provider accepts the sequence), and the
//! model is told what was removed ([`Compacted::note`]). A conversation
//! whose protected part alone is over the budget is sent as it is: the
//! provider then refuses it, and the run fails with the provider's message.

use countersign_proto::TranscriptEntry;
use std::borrow::Cow;

/// How many bytes of conversation an OpenAI-compatible model is sent when
/// its settings do not say (`context_bytes`): 400,000, about 100,000 tokens
/// of English, under the 128k-token context of current models with room
/// for the instructions, tools and the answer.
pub const DEFAULT_CONTEXT_BYTES: usize = 400_000;

/// A transcript that fits, and what the model is told about it.
#[derive(Debug)]
pub struct Compacted<'a> {
    /// The transcript to send.
    pub transcript: Cow<'a, [TranscriptEntry]>,
    /// Added to the instructions when something was removed.
    pub note: Option<String>,
}

/// The size an entry counts for: its text and its calls' names and
/// arguments.
fn entry_bytes(entry: &TranscriptEntry) -> usize {
    use prost::Message;
    entry.content.len()
        + entry
            .tool_calls
            .iter()
            .map(|c| c.name.len() + c.arguments.as_ref().map_or(0, Message::encoded_len))
            .sum::<usize>()
}

/// `transcript` cut to `budget` bytes as the module says.
pub fn compact(transcript: &[TranscriptEntry], budget: usize) -> Compacted<'_> {
    let mut total: usize = transcript.iter().map(entry_bytes).sum();
    if total <= budget {
        return Compacted {
            transcript: Cow::Borrowed(transcript),
            note: None,
        };
    }
    // The latest turn: from the last assistant entry on.
    let latest = transcript
        .iter()
        .rposition(|e| e.role == "assistant")
        .unwrap_or(transcript.len());
    let mut entries = transcript.to_vec();
    let (mut removed, mut removed_bytes) = (0usize, 0usize);
    for role in ["tool", "assistant"] {
        for entry in entries.iter_mut().take(latest).skip(1) {
            if total <= budget {
                break;
            }
            if entry.role != role {
                continue;
            }
            let size = entry.content.len();
            let placeholder = if role == "tool" {
                format!(
                    "[removed to fit the model's context: this tool result had {size} bytes; call the tool again if you need it]"
                )
            } else {
                format!("[removed to fit the model's context: {size} bytes]")
            };
            if placeholder.len() >= size {
                continue;
            }
            total -= size - placeholder.len();
            removed += 1;
            removed_bytes += size;
            entry.content = placeholder;
        }
    }
    if removed == 0 {
        return Compacted {
            transcript: Cow::Borrowed(transcript),
            note: None,
        };
    }
    Compacted {
        transcript: Cow::Owned(entries),
        note: Some(format!(
            "Note: to fit your context, the contents of {removed} earlier messages ({removed_bytes} bytes, \
             oldest tool results first) were replaced by placeholders. The user's request and the latest \
             turn are complete; call a tool again if you need what it returned before."
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(role: &str, content: &str) -> TranscriptEntry {
        TranscriptEntry {
            role: role.into(),
            content: content.into(),
            ..Default::default()
        }
    }

    fn conversation(turns: usize, result_bytes: usize) -> Vec<TranscriptEntry> {
        let mut entries = vec![entry("user", "read the file every turn")];
        for _ in 0..turns {
            entries.push(entry("assistant", "reading"));
            entries.push(entry("tool", &"x".repeat(result_bytes)));
        }
        entries
    }

    #[test]
    fn a_conversation_that_fits_is_sent_as_it_is() {
        let transcript = conversation(3, 100);
        let compacted = compact(&transcript, 10_000);
        assert!(matches!(compacted.transcript, Cow::Borrowed(_)));
        assert!(compacted.note.is_none());
    }

    #[test]
    fn oldest_tool_results_go_first_and_the_latest_turn_stays() {
        let transcript = conversation(10, 1000);
        let compacted = compact(&transcript, 5_000);
        let sent = &compacted.transcript;
        assert_eq!(sent.len(), transcript.len(), "every message stays in place");
        let size: usize = sent.iter().map(entry_bytes).sum();
        assert!(size <= 5_000, "{size}");
        assert_eq!(sent[0], transcript[0]);
        assert_eq!(sent.last(), transcript.last(), "the latest result is whole");
        assert!(
            sent[2].content.starts_with("[removed to fit"),
            "{}",
            sent[2].content
        );
        let note = compacted.note.expect("the model is told");
        assert!(note.contains("earlier messages"), "{note}");
        // Deterministic: the same input gives the same request.
        assert_eq!(compact(&transcript, 5_000).transcript, compacted.transcript);
    }

    #[test]
    fn a_latest_turn_over_the_budget_is_sent_whole() {
        let transcript = conversation(1, 10_000);
        let compacted = compact(&transcript, 1_000);
        assert_eq!(&*compacted.transcript, &transcript[..]);
        assert!(compacted.note.is_none());
    }
}
