//! The payload store: Temporal's claim-check pattern for Countersign.
//!
//! [`PayloadStoreCodec`] is a Temporal [`PayloadCodec`]: on the way to the
//! server, every payload of at least [`DEFAULT_THRESHOLD`] bytes (its
//! serialized protobuf) is written to an object store under its SHA-256 and
//! replaced by a small reference payload; on the way back, a reference is
//! read from the store, checked against its hash and replaced by the
//! original payload. The codec runs in the SDK's data conversion (the
//! worker's activations and completions, every client call), never in
//! workflow code, so workflows stay deterministic: a replay reads the same
//! bytes, because the key is their hash.
//!
//! The reference follows the format Temporal's SDKs publish for their
//! "External Storage" (`temporal.api.sdk.v1.ExternalStorageReference`, sent
//! as `json/protobuf` with that `messageType`, the stored size in the
//! payload's `external_payloads`), and the claim follows their S3 driver's
//! (`bucket`, `key`, `hash_algorithm` = `sha256`, `hash_value`; the object is
//! the serialized `Payload` and the key ends in `v0/d/sha256/<hex>`), so an
//! SDK worker with the S3 driver on the same bucket reads these payloads and
//! this codec reads theirs. The older Python form
//! (`json/external-storage-reference`) is read too.
//!
//! Stores are configured by URL ([`PayloadStore::from_url`]): `file:///path`
//! (or a plain path) for a local folder, `s3://bucket/prefix`, `gs://bucket/prefix`
//! and `az://container/prefix` for the clouds, with credentials from the
//! usual environment variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`).

use futures::FutureExt;
use futures::future::BoxFuture;
use object_store::ObjectStore;
use object_store::path::Path as StorePath;
use prost::Message;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use temporalio_common::data_converters::{
    DataConverter, DefaultFailureConverter, PayloadCodec, PayloadConversionError, PayloadConverter,
    SerializationContextData,
};
use temporalio_common::protos::temporal::api::common::v1::Payload;
use temporalio_common::protos::temporal::api::common::v1::payload::ExternalPayloadDetails;

pub mod transcript;
pub use transcript::{TranscriptError, TranscriptStore};

/// The environment variable that names the payload store (the same URL as
/// `--payload-store`).
pub const ENV_PAYLOAD_STORE: &str = "COUNTERSIGN_PAYLOAD_STORE";

/// Payloads of at least this many bytes (serialized) go to the store:
/// 128 KiB, well under Temporal's 2 MiB blob limit and its 512 KiB warning.
pub const DEFAULT_THRESHOLD: usize = 128 * 1024;

/// The largest payload the store takes or returns: 64 MiB. A run checks its
/// payloads against this before it sends them, so it ends as Failed rather
/// than fail workflow tasks on a payload the codec refuses.
pub const MAX_STORED_PAYLOAD_BYTES: usize = 64 * 1024 * 1024;

/// The payload metadata key of the encoding.
const ENCODING_KEY: &str = "encoding";
/// The payload metadata key of a protobuf message's type.
const MESSAGE_TYPE_KEY: &str = "messageType";
/// The encoding of references (the proto3 JSON of the message).
pub const REFERENCE_ENCODING: &str = "json/protobuf";
/// The message a reference holds, as Temporal's API defines it.
pub const REFERENCE_MESSAGE_TYPE: &str = "temporal.api.sdk.v1.ExternalStorageReference";
/// The encoding of references written by earlier Python SDK releases.
const LEGACY_REFERENCE_ENCODING: &str = "json/external-storage-reference";
/// The driver name of S3 stores: the name Temporal's SDKs give their S3
/// driver, so their workers find ours.
const S3_DRIVER_NAME: &str = "aws.s3driver";
/// The driver name of every other store.
const DRIVER_NAME: &str = "countersign.object_store";
/// The longest reference payload this codec reads (a reference is small).
const MAX_REFERENCE_BYTES: usize = 16 * 1024;

/// What can go wrong configuring or using the payload store.
#[derive(Debug, thiserror::Error)]
pub enum PayloadStoreError {
    /// The store's URL cannot be used.
    #[error("payload store `{url}`: {problem}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Writing a payload failed.
    #[error("payload store {store}: cannot write {key}: {problem}")]
    Write {
        /// The store's URL.
        store: String,
        /// The object's key.
        key: String,
        /// The store's error.
        problem: String,
    },
    /// Reading a payload failed.
    #[error("payload store {store}: cannot read {key}: {problem}")]
    Read {
        /// The store's URL.
        store: String,
        /// The object's key.
        key: String,
        /// The store's error.
        problem: String,
    },
    /// The stored bytes are not the ones the reference names.
    #[error(
        "payload store {store}: {key} does not match its reference (sha256 {expected} expected, {actual} found)"
    )]
    HashMismatch {
        /// The store's URL.
        store: String,
        /// The object's key.
        key: String,
        /// The hash in the reference.
        expected: String,
        /// The hash of what the store returned.
        actual: String,
    },
    /// A reference payload cannot be read.
    #[error("malformed payload reference: {0}")]
    Reference(String),
    /// A payload is over [`MAX_STORED_PAYLOAD_BYTES`].
    #[error(
        "a payload of {size} bytes is over the payload store's limit of {MAX_STORED_PAYLOAD_BYTES}"
    )]
    TooLarge {
        /// The payload's size.
        size: usize,
    },
}

/// Where large payloads go: an object store and where keys start in it.
#[derive(Clone)]
pub struct PayloadStore {
    store: Arc<dyn ObjectStore>,
    /// The URL's path inside the bucket (S3, GCS, Azure), empty for a local
    /// folder (the store is rooted at the folder).
    prefix: String,
    /// The bucket or container; empty for a local folder.
    bucket: String,
    driver_name: &'static str,
    threshold: usize,
    /// The URL, for messages.
    url: String,
}

impl std::fmt::Debug for PayloadStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayloadStore")
            .field("url", &self.url)
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

/// A reference read from history: where the payload is and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The name of the driver that stored it.
    pub driver_name: String,
    /// The bucket it names, if any.
    pub bucket: Option<String>,
    /// The object's key.
    pub key: String,
    /// The SHA-256 (hex) of the stored bytes.
    pub sha256: String,
    /// The stored payload's size, when the reference says.
    pub size_bytes: Option<u64>,
}

impl PayloadStore {
    /// Opens the store `url` names: `file:///path` or a plain path (a local
    /// folder, created if missing), `s3://bucket/prefix`, `gs://bucket/prefix`,
    /// `az://container/prefix` (credentials and region from the usual
    /// `AWS_*`, `GOOGLE_*` and `AZURE_*` environment variables). Nothing is
    /// read or written until a payload is.
    pub fn from_url(url: &str) -> Result<Self, PayloadStoreError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Self::from_url_with_env(url, &env)
    }

    /// Like [`PayloadStore::from_url`], with `env` in place of the process
    /// environment.
    pub fn from_url_with_env(
        url: &str,
        env: &HashMap<String, String>,
    ) -> Result<Self, PayloadStoreError> {
        let bad = |problem: String| PayloadStoreError::Url {
            url: url.to_string(),
            problem,
        };
        let trimmed = url.trim();
        if trimmed.is_empty() {
            return Err(bad("is empty".into()));
        }
        let parsed = match url::Url::parse(trimmed) {
            Ok(parsed) => parsed,
            Err(url::ParseError::RelativeUrlWithoutBase) => {
                return Self::local(std::path::Path::new(trimmed), url);
            }
            Err(e) => return Err(bad(e.to_string())),
        };
        if parsed.scheme() == "file" {
            let path = parsed
                .to_file_path()
                .map_err(|()| bad("is not a local path".into()))?;
            return Self::local(&path, url);
        }
        let driver_name = match parsed.scheme() {
            "s3" | "s3a" => S3_DRIVER_NAME,
            "gs" | "az" | "azure" | "abfs" | "abfss" | "adl" => DRIVER_NAME,
            other => {
                return Err(bad(format!(
                    "unknown scheme `{other}`; use file://, s3://, gs:// or az://"
                )));
            }
        };
        // The builders read these variables themselves only in `from_env`;
        // parse_url_opts takes them as options (lower-cased, as from_env does).
        let options = env.iter().filter_map(|(k, v)| {
            let key = k.to_ascii_lowercase();
            (key.starts_with("aws_") || key.starts_with("google_") || key.starts_with("azure_"))
                .then(|| (key, v.clone()))
        });
        let (store, prefix) =
            object_store::parse_url_opts(&parsed, options).map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            store: Arc::from(store),
            prefix: prefix.to_string(),
            bucket: parsed.host_str().unwrap_or_default().to_string(),
            driver_name,
            threshold: DEFAULT_THRESHOLD,
            url: url.to_string(),
        })
    }

    fn local(path: &std::path::Path, url: &str) -> Result<Self, PayloadStoreError> {
        let bad = |problem: String| PayloadStoreError::Url {
            url: url.to_string(),
            problem,
        };
        std::fs::create_dir_all(path)
            .map_err(|e| bad(format!("cannot create {}: {e}", path.display())))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(path)
            .map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            store: Arc::new(store),
            prefix: String::new(),
            bucket: String::new(),
            driver_name: DRIVER_NAME,
            threshold: DEFAULT_THRESHOLD,
            url: url.to_string(),
        })
    }

    /// The same store, moving payloads of at least `bytes` (a test's or a
    /// benchmark's choice; the default is [`DEFAULT_THRESHOLD`]).
    pub fn with_threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// The store's URL as configured.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The key of bytes with SHA-256 `hex`: `[prefix/]v0/d/sha256/<hex>`, as
    /// Temporal's S3 driver names objects it stores without a context.
    pub fn key_of(&self, hex: &str) -> String {
        self.key_in("v0/d/sha256", hex)
    }

    /// The key of bytes with SHA-256 `hex` in the store's `folder`.
    fn key_in(&self, folder: &str, hex: &str) -> String {
        if self.prefix.is_empty() {
            format!("{folder}/{hex}")
        } else {
            format!("{}/{folder}/{hex}", self.prefix)
        }
    }

    /// Writes `bytes` under `key` unless something is there already (keys
    /// are content hashes: what is there is the same bytes).
    async fn put_once(&self, key: &str, bytes: Vec<u8>) -> Result<(), PayloadStoreError> {
        let location = StorePath::parse(key).map_err(|e| self.write_error(key, e))?;
        if self.store.head(&location).await.is_err() {
            self.store
                .put(&location, bytes.into())
                .await
                .map_err(|e| self.write_error(key, e))?;
        }
        Ok(())
    }

    /// Reads `key`, refusing more than `max` bytes and bytes whose SHA-256
    /// is not `sha256`.
    async fn get_verified(
        &self,
        key: &str,
        sha256: &str,
        max: usize,
    ) -> Result<bytes::Bytes, PayloadStoreError> {
        let location = StorePath::parse(key).map_err(|e| self.read_error(key, e))?;
        let found = self
            .store
            .get(&location)
            .await
            .map_err(|e| self.read_error(key, e))?;
        if found.meta.size > max as u64 {
            return Err(self.read_error(
                key,
                format!("{} bytes, over the limit of {max}", found.meta.size),
            ));
        }
        let bytes = found.bytes().await.map_err(|e| self.read_error(key, e))?;
        let actual = hex::encode(Sha256::digest(&bytes));
        if !actual.eq_ignore_ascii_case(sha256) {
            return Err(PayloadStoreError::HashMismatch {
                store: self.url.clone(),
                key: key.to_string(),
                expected: sha256.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Stores `payload` when it is at least the threshold and answers its
    /// reference; smaller payloads come back as they are.
    pub async fn store(&self, payload: Payload) -> Result<Payload, PayloadStoreError> {
        let size = payload.encoded_len();
        if size < self.threshold || reference_of(&payload).is_some() {
            return Ok(payload);
        }
        if size > MAX_STORED_PAYLOAD_BYTES {
            return Err(PayloadStoreError::TooLarge { size });
        }
        let bytes = payload.encode_to_vec();
        let hex = hex::encode(Sha256::digest(&bytes));
        let key = self.key_of(&hex);
        self.put_once(&key, bytes).await?;
        Ok(self.reference_payload(&key, &hex, size as u64))
    }

    fn write_error(&self, key: &str, e: impl std::fmt::Display) -> PayloadStoreError {
        PayloadStoreError::Write {
            store: self.url.clone(),
            key: key.to_string(),
            problem: e.to_string(),
        }
    }

    fn read_error(&self, key: &str, e: impl std::fmt::Display) -> PayloadStoreError {
        PayloadStoreError::Read {
            store: self.url.clone(),
            key: key.to_string(),
            problem: e.to_string(),
        }
    }

    /// The reference payload history keeps for a stored payload.
    fn reference_payload(&self, key: &str, hex: &str, size: u64) -> Payload {
        let mut claim = Map::new();
        if !self.bucket.is_empty() {
            claim.insert("bucket".into(), Value::String(self.bucket.clone()));
        }
        claim.insert("key".into(), Value::String(key.to_string()));
        claim.insert("hash_algorithm".into(), Value::String("sha256".into()));
        claim.insert("hash_value".into(), Value::String(hex.to_string()));
        let data = serde_json::json!({
            "driverName": self.driver_name,
            "claimData": claim,
        });
        Payload {
            metadata: HashMap::from([
                (
                    ENCODING_KEY.to_string(),
                    REFERENCE_ENCODING.as_bytes().to_vec(),
                ),
                (
                    MESSAGE_TYPE_KEY.to_string(),
                    REFERENCE_MESSAGE_TYPE.as_bytes().to_vec(),
                ),
            ]),
            data: serde_json::to_vec(&data).unwrap_or_default(),
            external_payloads: vec![ExternalPayloadDetails {
                size_bytes: size as i64,
            }],
        }
    }

    /// The payload `payload` stands for: itself, or for a reference the
    /// stored payload, read and checked against the reference's hash.
    pub async fn resolve(&self, payload: Payload) -> Result<Payload, PayloadStoreError> {
        let Some(reference) = reference_of(&payload) else {
            return Ok(payload);
        };
        let reference = reference?;
        if let Some(bucket) = &reference.bucket
            && !self.bucket.is_empty()
            && *bucket != self.bucket
        {
            return Err(PayloadStoreError::Reference(format!(
                "it names bucket `{bucket}`, this store is `{}`",
                self.url
            )));
        }
        let key = &reference.key;
        let bytes = self
            .get_verified(key, &reference.sha256, MAX_STORED_PAYLOAD_BYTES)
            .await?;
        Payload::decode(bytes).map_err(|e| self.read_error(key, format!("not a payload: {e}")))
    }
}

/// `None` when `payload` is not a reference; else the reference it holds,
/// or why it cannot be read.
pub fn reference_of(payload: &Payload) -> Option<Result<Reference, PayloadStoreError>> {
    let encoding = payload.metadata.get(ENCODING_KEY)?.as_slice();
    let legacy = encoding == LEGACY_REFERENCE_ENCODING.as_bytes();
    let current = encoding == REFERENCE_ENCODING.as_bytes()
        && payload.metadata.get(MESSAGE_TYPE_KEY).map(Vec::as_slice)
            == Some(REFERENCE_MESSAGE_TYPE.as_bytes());
    if !legacy && !current {
        return None;
    }
    Some(parse_reference(payload))
}

fn parse_reference(payload: &Payload) -> Result<Reference, PayloadStoreError> {
    let bad = |problem: &str| PayloadStoreError::Reference(problem.to_string());
    if payload.data.len() > MAX_REFERENCE_BYTES {
        return Err(bad("over 16 KiB"));
    }
    let value: Value = serde_json::from_slice(&payload.data).map_err(|_| bad("not JSON"))?;
    let field = |camel: &str, snake: &str| value.get(camel).or_else(|| value.get(snake));
    let driver_name = field("driverName", "driver_name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no driver name"))?
        .to_string();
    // The proto form has `claimData`; the earlier Python form nests it
    // as `driver_claim.claim_data`.
    let claim = field("claimData", "claim_data")
        .or_else(|| value.get("driver_claim")?.get("claim_data"))
        .and_then(Value::as_object)
        .ok_or_else(|| bad("no claim data"))?;
    let text = |name: &str| claim.get(name).and_then(Value::as_str).map(str::to_string);
    let key = text("key").ok_or_else(|| bad("no key in its claim"))?;
    match text("hash_algorithm").as_deref() {
        Some("sha256") => {}
        Some(other) => {
            return Err(PayloadStoreError::Reference(format!(
                "hash algorithm `{}` is not sha256",
                other.chars().take(32).collect::<String>()
            )));
        }
        None => return Err(bad("no hash_algorithm in its claim: it cannot be verified")),
    }
    let sha256 = text("hash_value")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| bad("no sha256 hash_value in its claim"))?;
    Ok(Reference {
        driver_name,
        bucket: text("bucket"),
        key,
        sha256,
        size_bytes: payload
            .external_payloads
            .first()
            .map(|d| d.size_bytes.max(0) as u64),
    })
}

/// The [`PayloadCodec`] that moves large payloads to a [`PayloadStore`].
#[derive(Clone, Debug)]
pub struct PayloadStoreCodec {
    store: PayloadStore,
}

impl PayloadStoreCodec {
    /// A codec over `store`.
    pub fn new(store: PayloadStore) -> Self {
        Self { store }
    }
}

fn codec_error(e: PayloadStoreError) -> PayloadConversionError {
    PayloadConversionError::EncodingError(Box::new(e))
}

impl PayloadCodec for PayloadStoreCodec {
    fn encode(
        &self,
        _: &SerializationContextData,
        payloads: Vec<Payload>,
    ) -> BoxFuture<'static, Result<Vec<Payload>, PayloadConversionError>> {
        let store = self.store.clone();
        async move {
            futures::future::try_join_all(payloads.into_iter().map(|p| store.store(p)))
                .await
                .map_err(codec_error)
        }
        .boxed()
    }

    fn decode(
        &self,
        _: &SerializationContextData,
        payloads: Vec<Payload>,
    ) -> BoxFuture<'static, Result<Vec<Payload>, PayloadConversionError>> {
        let store = self.store.clone();
        async move {
            futures::future::try_join_all(payloads.into_iter().map(|p| store.resolve(p)))
                .await
                .map_err(codec_error)
        }
        .boxed()
    }
}

/// The SDK's default data converter with the payload store as its codec.
pub fn data_converter(store: PayloadStore) -> DataConverter {
    DataConverter::new(
        PayloadConverter::default(),
        DefaultFailureConverter::default(),
        PayloadStoreCodec::new(store),
    )
}

/// Makes `client` (and every worker built on it) use `store` for large
/// payloads.
pub fn install(client: &mut temporalio_client::Client, store: PayloadStore) {
    client.options_mut().data_converter = data_converter(store);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(bytes: usize) -> Payload {
        Payload {
            metadata: HashMap::from([(ENCODING_KEY.to_string(), b"json/plain".to_vec())]),
            data: vec![b'a'; bytes],
            external_payloads: vec![],
        }
    }

    fn folder_store(dir: &tempfile::TempDir) -> PayloadStore {
        PayloadStore::from_url(&format!("file://{}", dir.path().display())).unwrap()
    }

    #[tokio::test]
    async fn large_payloads_round_trip_through_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let store = folder_store(&dir);
        let big = payload(DEFAULT_THRESHOLD + 10);
        let reference = store.store(big.clone()).await.unwrap();
        assert!(
            reference.encoded_len() < 1024,
            "{}",
            reference.encoded_len()
        );
        let parsed = reference_of(&reference).unwrap().unwrap();
        assert_eq!(parsed.driver_name, DRIVER_NAME);
        assert_eq!(parsed.size_bytes, Some(big.encoded_len() as u64));
        assert_eq!(parsed.key, format!("v0/d/sha256/{}", parsed.sha256));
        let file = dir.path().join(&parsed.key);
        assert_eq!(std::fs::read(&file).unwrap(), big.encode_to_vec());
        assert_eq!(store.resolve(reference.clone()).await.unwrap(), big);
        // Content-addressed: storing it again gives the same reference.
        assert_eq!(store.store(big).await.unwrap(), reference);
    }

    #[tokio::test]
    async fn small_payloads_stay_inline() {
        let dir = tempfile::tempdir().unwrap();
        let store = folder_store(&dir);
        let small = payload(100);
        assert_eq!(store.store(small.clone()).await.unwrap(), small);
        assert_eq!(store.resolve(small.clone()).await.unwrap(), small);
    }

    #[tokio::test]
    async fn changed_bytes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = folder_store(&dir);
        let reference = store.store(payload(DEFAULT_THRESHOLD)).await.unwrap();
        let parsed = reference_of(&reference).unwrap().unwrap();
        let other = payload(DEFAULT_THRESHOLD + 1).encode_to_vec();
        std::fs::write(dir.path().join(&parsed.key), other).unwrap();
        let error = store.resolve(reference).await.unwrap_err();
        assert!(
            matches!(error, PayloadStoreError::HashMismatch { .. }),
            "{error}"
        );
    }

    #[tokio::test]
    async fn references_of_other_sdks_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = folder_store(&dir);
        let big = payload(DEFAULT_THRESHOLD);
        let ours = reference_of(&store.store(big.clone()).await.unwrap())
            .unwrap()
            .unwrap();
        // The earlier Python SDK form.
        let legacy = Payload {
            metadata: HashMap::from([(
                ENCODING_KEY.to_string(),
                LEGACY_REFERENCE_ENCODING.as_bytes().to_vec(),
            )]),
            data: serde_json::to_vec(&serde_json::json!({
                "driver_name": "aws.s3driver",
                "driver_claim": {"claim_data": {
                    "key": ours.key, "hash_algorithm": "sha256", "hash_value": ours.sha256
                }}
            }))
            .unwrap(),
            external_payloads: vec![],
        };
        assert_eq!(store.resolve(legacy).await.unwrap(), big);
        // The proto form with snake_case names.
        let snake = Payload {
            metadata: HashMap::from([
                (ENCODING_KEY.to_string(), REFERENCE_ENCODING.as_bytes().to_vec()),
                (
                    MESSAGE_TYPE_KEY.to_string(),
                    REFERENCE_MESSAGE_TYPE.as_bytes().to_vec(),
                ),
            ]),
            data: serde_json::to_vec(&serde_json::json!({
                "driver_name": "x",
                "claim_data": {"key": ours.key, "hash_algorithm": "sha256", "hash_value": ours.sha256}
            }))
            .unwrap(),
            external_payloads: vec![],
        };
        assert_eq!(store.resolve(snake).await.unwrap(), big);
    }

    #[tokio::test]
    async fn unverifiable_references_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = folder_store(&dir);
        let reference = Payload {
            metadata: HashMap::from([(
                ENCODING_KEY.to_string(),
                LEGACY_REFERENCE_ENCODING.as_bytes().to_vec(),
            )]),
            data: br#"{"driver_name":"x","driver_claim":{"claim_data":{"key":"v0/x"}}}"#.to_vec(),
            external_payloads: vec![],
        };
        let error = store.resolve(reference).await.unwrap_err();
        assert!(error.to_string().contains("hash"), "{error}");
    }

    #[test]
    fn urls_are_checked() {
        let env = HashMap::new();
        let error = PayloadStore::from_url_with_env("ftp://x/y", &env).unwrap_err();
        assert!(error.to_string().contains("unknown scheme"), "{error}");
        assert!(PayloadStore::from_url_with_env("", &env).is_err());
        let s3 = PayloadStore::from_url_with_env(
            "s3://bucket/some/prefix",
            &HashMap::from([("AWS_REGION".to_string(), "eu-west-1".to_string())]),
        )
        .unwrap();
        assert_eq!(s3.key_of("ab"), "some/prefix/v0/d/sha256/ab");
        assert_eq!(s3.bucket, "bucket");
        assert_eq!(s3.driver_name, S3_DRIVER_NAME);
    }
}
