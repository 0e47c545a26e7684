//! Transcripts by reference (issue 16): a run whose worker has a payload
//! store keeps the start of its conversation in the store, so no payload in
//! its history carries the whole transcript.
//!
//! Each model turn stores the entries that are new since the previous turn
//! as one [`TranscriptSegment`] (proto3 JSON) under the SHA-256 of its
//! bytes, at `v0/countersign/transcript/sha256/<hex>`; the segment names the
//! one before it, so a [`TranscriptRef`] to the latest segment stands for
//! the whole chain. Every entry is stored once (stored bytes grow linearly
//! with the turns), a retried turn writes the same object again, and a
//! replay reads the same bytes, because keys are hashes and every read is
//! checked against its key.
//!
//! Segments are immutable, so a [`TranscriptStore`] keeps the ones it read
//! or wrote in a small in-process cache (bounded by bytes): a worker's next
//! turn of the same run reads nothing.

use crate::{PayloadStore, PayloadStoreError};
use countersign_proto::{RunState, TranscriptEntry, TranscriptRef, TranscriptSegment};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// The folder segments live in, under the store's prefix.
const SEGMENT_FOLDER: &str = "v0/countersign/transcript/sha256";

/// The most a whole stored transcript may be: 256 MiB of segments. A run
/// whose transcript would pass it ends with [`TranscriptError::TooLong`].
pub const MAX_TRANSCRIPT_BYTES: u64 = 256 * 1024 * 1024;

/// The most segments a chain may have (one per model turn).
pub const MAX_SEGMENTS: u32 = 100_000;

/// The most bytes of segments a [`TranscriptStore`] keeps in memory.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// What can go wrong storing or reading a transcript.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    /// The store could not be read or written, or returned other bytes than
    /// the reference names.
    #[error(transparent)]
    Store(#[from] PayloadStoreError),
    /// A reference or a stored segment is not what a transcript is made of.
    #[error("transcript segment {sha256}: {problem}")]
    Malformed {
        /// The segment's hash, as given (cut to 64 characters).
        sha256: String,
        /// What is wrong.
        problem: String,
    },
    /// The transcript would be longer than [`MAX_TRANSCRIPT_BYTES`] or
    /// [`MAX_SEGMENTS`].
    #[error(
        "the stored transcript would be {bytes} bytes in {segments} segments, over the limit of \
         {MAX_TRANSCRIPT_BYTES} bytes or {MAX_SEGMENTS} segments; give the agent fewer turns (max_turns)"
    )]
    TooLong {
        /// Its bytes.
        bytes: u64,
        /// Its segments.
        segments: u64,
    },
}

impl TranscriptError {
    /// Whether trying again may succeed (the store was unreachable), rather
    /// than the reference or the stored bytes being wrong for good.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            TranscriptError::Store(
                PayloadStoreError::Read { .. } | PayloadStoreError::Write { .. }
            )
        )
    }
}

/// Whether `reference` is well formed: a 64-character lowercase hex hash and
/// counts within the limits. A reference that fails this is never used to
/// name an object.
pub fn check_ref(reference: &TranscriptRef) -> Result<(), TranscriptError> {
    if !is_sha256(&reference.sha256) {
        return Err(malformed(&reference.sha256, "not a lowercase hex SHA-256"));
    }
    if reference.bytes > MAX_TRANSCRIPT_BYTES || reference.segments > MAX_SEGMENTS {
        return Err(TranscriptError::TooLong {
            bytes: reference.bytes,
            segments: u64::from(reference.segments),
        });
    }
    if reference.segments == 0 || reference.entries == 0 {
        return Err(malformed(&reference.sha256, "a reference to no entries"));
    }
    Ok(())
}

fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn malformed(sha256: &str, problem: &str) -> TranscriptError {
    TranscriptError::Malformed {
        sha256: sha256.chars().take(64).collect(),
        problem: problem.to_string(),
    }
}

/// Segments read or written lately, by hash, oldest first out.
#[derive(Default)]
struct SegmentCache {
    segments: HashMap<String, (Arc<TranscriptSegment>, usize)>,
    order: VecDeque<String>,
    bytes: usize,
}

impl SegmentCache {
    fn get(&self, sha256: &str) -> Option<(Arc<TranscriptSegment>, usize)> {
        self.segments.get(sha256).cloned()
    }

    fn insert(&mut self, sha256: String, segment: Arc<TranscriptSegment>, size: usize) {
        if size > CACHE_BYTES || self.segments.contains_key(&sha256) {
            return;
        }
        while self.bytes + size > CACHE_BYTES {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some((_, freed)) = self.segments.remove(&oldest) {
                self.bytes -= freed;
            }
        }
        self.bytes += size;
        self.order.push_back(sha256.clone());
        self.segments.insert(sha256, (segment, size));
    }
}

/// Stores and reads transcripts in a [`PayloadStore`]. Cheap to clone; the
/// clones share one cache.
#[derive(Clone)]
pub struct TranscriptStore {
    payloads: PayloadStore,
    cache: Arc<Mutex<SegmentCache>>,
}

impl std::fmt::Debug for TranscriptStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TranscriptStore")
            .field("payloads", &self.payloads)
            .finish_non_exhaustive()
    }
}

impl PayloadStore {
    /// The transcripts kept in this store.
    pub fn transcripts(&self) -> TranscriptStore {
        TranscriptStore {
            payloads: self.clone(),
            cache: Arc::default(),
        }
    }
}

impl TranscriptStore {
    /// The key of the segment with SHA-256 `hex`.
    pub fn key_of(&self, hex: &str) -> String {
        self.payloads.key_in(SEGMENT_FOLDER, hex)
    }

    fn cached(&self, sha256: &str) -> Option<(Arc<TranscriptSegment>, usize)> {
        self.cache.lock().ok()?.get(sha256)
    }

    fn remember(&self, sha256: &str, segment: Arc<TranscriptSegment>, size: usize) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(sha256.to_string(), segment, size);
        }
    }

    /// Stores `entries` as the segment after `previous` (none: the first)
    /// and answers the reference to the transcript they end.
    pub async fn append(
        &self,
        previous: Option<&TranscriptRef>,
        entries: Vec<TranscriptEntry>,
    ) -> Result<TranscriptRef, TranscriptError> {
        if let Some(previous) = previous {
            check_ref(previous)?;
        }
        let segment = TranscriptSegment {
            previous_sha256: previous.map(|p| p.sha256.clone()).unwrap_or_default(),
            entries,
        };
        let bytes = serde_json::to_vec(&segment)
            .map_err(|e| malformed("(new)", &format!("cannot be written as JSON: {e}")))?;
        let total = previous.map_or(0, |p| p.bytes) + bytes.len() as u64;
        let segments = previous.map_or(0, |p| p.segments) + 1;
        if total > MAX_TRANSCRIPT_BYTES || segments > MAX_SEGMENTS {
            return Err(TranscriptError::TooLong {
                bytes: total,
                segments: u64::from(segments),
            });
        }
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let size = bytes.len();
        self.payloads.put_once(&self.key_of(&sha256), bytes).await?;
        let reference = TranscriptRef {
            entries: previous.map_or(0, |p| p.entries) + segment.entries.len() as u32,
            bytes: total,
            segments,
            sha256,
        };
        self.remember(&reference.sha256, Arc::new(segment), size);
        Ok(reference)
    }

    /// Reads one segment, from the cache or the store.
    async fn segment(
        &self,
        sha256: &str,
    ) -> Result<(Arc<TranscriptSegment>, u64), TranscriptError> {
        if !is_sha256(sha256) {
            return Err(malformed(sha256, "not a lowercase hex SHA-256"));
        }
        if let Some((segment, size)) = self.cached(sha256) {
            return Ok((segment, size as u64));
        }
        let key = self.key_of(sha256);
        let bytes = self
            .payloads
            .get_verified(&key, sha256, MAX_TRANSCRIPT_BYTES as usize)
            .await?;
        let segment: TranscriptSegment = serde_json::from_slice(&bytes)
            .map_err(|e| malformed(sha256, &format!("not a transcript segment: {e}")))?;
        let segment = Arc::new(segment);
        self.remember(sha256, segment.clone(), bytes.len());
        Ok((segment, bytes.len() as u64))
    }

    /// The whole transcript `reference` stands for, oldest entry first,
    /// checked against the reference's counts.
    pub async fn load(
        &self,
        reference: &TranscriptRef,
    ) -> Result<Vec<TranscriptEntry>, TranscriptError> {
        check_ref(reference)?;
        let mut chain = Vec::new();
        let mut bytes = 0u64;
        let mut next = reference.sha256.clone();
        while !next.is_empty() {
            if chain.len() >= reference.segments as usize {
                return Err(malformed(
                    &reference.sha256,
                    "has more segments than its reference says",
                ));
            }
            let (segment, size) = self.segment(&next).await?;
            bytes += size;
            next = segment.previous_sha256.clone();
            chain.push(segment);
        }
        let entries: usize = chain.iter().map(|s| s.entries.len()).sum();
        if chain.len() != reference.segments as usize
            || entries != reference.entries as usize
            || bytes != reference.bytes
        {
            return Err(malformed(
                &reference.sha256,
                "its segments do not add up to its reference",
            ));
        }
        Ok(chain
            .iter()
            .rev()
            .flat_map(|s| s.entries.iter().cloned())
            .collect())
    }

    /// Makes `state.transcript` the whole conversation: the stored entries,
    /// then the ones the run still holds. A state without a stored
    /// transcript is left as it is.
    pub async fn resolve(&self, state: &mut RunState) -> Result<(), TranscriptError> {
        let Some(reference) = state.stored_transcript.as_ref() else {
            return Ok(());
        };
        let mut whole = self.load(reference).await?;
        whole.append(&mut state.transcript);
        state.transcript = whole;
        state.stored_transcript = None;
        Ok(())
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

    fn store(dir: &tempfile::TempDir) -> TranscriptStore {
        PayloadStore::from_url(&format!("file://{}", dir.path().display()))
            .unwrap()
            .transcripts()
    }

    #[tokio::test]
    async fn segments_chain_into_the_whole_transcript() {
        let dir = tempfile::tempdir().unwrap();
        let transcripts = store(&dir);
        let first = transcripts
            .append(None, vec![entry("user", "hello")])
            .await
            .unwrap();
        let second = transcripts
            .append(
                Some(&first),
                vec![entry("assistant", "hi"), entry("tool", &"x".repeat(1000))],
            )
            .await
            .unwrap();
        assert_eq!((second.entries, second.segments), (3, 2));
        // A fresh store (no cache) reads the same from the folder.
        let whole = store(&dir).load(&second).await.unwrap();
        let roles: Vec<&str> = whole.iter().map(|e| e.role.as_str()).collect();
        assert_eq!(roles, ["user", "assistant", "tool"]);
        let file = dir.path().join(transcripts.key_of(&second.sha256));
        assert_eq!(
            std::fs::metadata(file).unwrap().len() + first.bytes,
            second.bytes
        );
        // Stored bytes grow with what is new, not with the whole.
        let third = transcripts
            .append(Some(&second), vec![entry("assistant", "done")])
            .await
            .unwrap();
        assert!(third.bytes - second.bytes < 200, "{third:?}");

        let mut state = RunState {
            stored_transcript: Some(second.clone()),
            transcript: vec![entry("assistant", "done")],
            ..Default::default()
        };
        transcripts.resolve(&mut state).await.unwrap();
        assert_eq!(state.transcript.len(), 4);
        assert!(state.stored_transcript.is_none());
    }

    #[tokio::test]
    async fn changed_or_forged_segments_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let transcripts = store(&dir);
        let reference = transcripts
            .append(None, vec![entry("user", "hello")])
            .await
            .unwrap();
        let file = dir.path().join(transcripts.key_of(&reference.sha256));
        std::fs::write(
            &file,
            b"{\"entries\":[{\"role\":\"user\",\"content\":\"bye\"}]}",
        )
        .unwrap();
        let fresh = store(&dir);
        assert!(matches!(
            fresh.load(&reference).await,
            Err(TranscriptError::Store(
                PayloadStoreError::HashMismatch { .. }
            ))
        ));
        // Counts that do not match the chain are refused.
        let other = store(&tempfile::tempdir().unwrap());
        let real = other.append(None, vec![entry("user", "a")]).await.unwrap();
        let inflated = TranscriptRef {
            entries: 5,
            ..real.clone()
        };
        assert!(matches!(
            other.load(&inflated).await,
            Err(TranscriptError::Malformed { .. })
        ));
        // Hashes that are not hashes never name an object.
        for sha256 in [
            "../../etc/passwd".to_string(),
            "A".repeat(64),
            "0".repeat(63),
        ] {
            let forged = TranscriptRef {
                sha256,
                ..real.clone()
            };
            assert!(matches!(
                other.load(&forged).await,
                Err(TranscriptError::Malformed { .. })
            ));
        }
        let huge = TranscriptRef {
            bytes: MAX_TRANSCRIPT_BYTES + 1,
            ..real
        };
        assert!(matches!(
            other.append(Some(&huge), vec![]).await,
            Err(TranscriptError::TooLong { .. })
        ));
    }

    #[test]
    fn the_cache_stays_within_its_bytes() {
        let mut cache = SegmentCache::default();
        for i in 0..10 {
            cache.insert(
                format!("{i:064}"),
                Arc::new(TranscriptSegment::default()),
                CACHE_BYTES / 4,
            );
        }
        assert!(cache.bytes <= CACHE_BYTES);
        assert_eq!(cache.segments.len(), 4);
        assert!(cache.get(&format!("{:064}", 9)).is_some());
        assert!(cache.get(&format!("{:064}", 0)).is_none());
    }
}
