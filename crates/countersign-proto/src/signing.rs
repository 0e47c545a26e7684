//! Signed decisions: the one home of the bytes a decision's signature covers,
//! of signing and verifying, and of reading key text.
//!
//! A signature is Ed25519 (RFC 8032) over [`signed_bytes`]: the UTF-8 text
//! [`SIGNING_CONTEXT`] followed by the [canonical JSON](crate::canonical_json)
//! of exactly the decision's `approvalId`, `kind`, `reviewer`, `reason`,
//! `editedArguments`, `argumentsSha256` and `scope` (strings as sent, `""`
//! when absent; enums by value name; `editedArguments` the object or `null`).
//! The proto file (`DecisionSignature`) documents the same form for other
//! languages.
//!
//! Everything here is pure (no I/O): [`verify`] runs in workflow code. Key
//! files are read by the binaries; this module parses their text (PKCS#8
//! PEM private keys, SPKI PEM public keys).

use crate::{Decision, DecisionSignature, struct_to_json};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer as _};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub use ed25519_dalek::{SigningKey, VerifyingKey};

/// What the signed bytes start with: names the message, so a signature over
/// a decision can never be taken for a signature over anything else.
pub const SIGNING_CONTEXT: &str = "countersign.v1.Decision\n";

/// The longest key id, in characters.
pub const MAX_KEY_ID_CHARS: usize = 64;

/// The length of a signature in standard base64 (64 bytes, padded).
pub const SIGNATURE_BASE64_CHARS: usize = 88;

/// A key id that cannot name a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid key id `{0}`: 1-{MAX_KEY_ID_CHARS} letters, digits, `-`, `_` or `.`, not starting with `.`"
)]
pub struct InvalidKeyId(pub String);

/// Key text that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not a PKCS#8 PEM Ed25519 private key.
    #[error("not an Ed25519 private key in PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`): {0}")]
    Private(String),
    /// Not an SPKI PEM Ed25519 public key.
    #[error("not an Ed25519 public key in SPKI PEM (`-----BEGIN PUBLIC KEY-----`): {0}")]
    Public(String),
    /// Trusted key bytes that are not an Ed25519 public key.
    #[error("trusted key `{0}` is not a valid Ed25519 public key")]
    Trusted(String),
}

/// Why a signed decision does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The key id is malformed.
    #[error(transparent)]
    KeyId(#[from] InvalidKeyId),
    /// No trusted key has this id.
    #[error("signed by `{0}`, which is not a key the worker trusts")]
    UnknownKey(String),
    /// The signature is not 88 characters of base64 of 64 bytes.
    #[error("the signature is not base64 of a 64-byte Ed25519 signature")]
    Malformed,
    /// The signature does not match the decision under this key.
    #[error(
        "the signature does not verify under key `{0}`: the decision was changed after signing, or signed by another key"
    )]
    Mismatch(String),
    /// The trusted key itself is broken.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Checks that `id` can name a key: 1 to [`MAX_KEY_ID_CHARS`] ASCII letters,
/// digits, `-`, `_` or `.`, not starting with `.` (no hidden files).
pub fn check_key_id(id: &str) -> Result<(), InvalidKeyId> {
    let ok = !id.is_empty()
        && id.len() <= MAX_KEY_ID_CHARS
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        let shown: String = id.chars().take(MAX_KEY_ID_CHARS).collect();
        Err(InvalidKeyId(shown))
    }
}

/// The JSON object a signature covers (before canonicalization).
pub fn signed_fields(d: &Decision) -> Value {
    let kind = crate::DecisionKind::try_from(d.kind)
        .map(|k| k.as_str_name().to_string())
        .unwrap_or_else(|_| d.kind.to_string());
    let scope = crate::DecisionScope::try_from(d.scope)
        .map(|s| s.as_str_name().to_string())
        .unwrap_or_else(|_| d.scope.to_string());
    json!({
        "approvalId": d.approval_id,
        "kind": kind,
        "reviewer": d.reviewer,
        "reason": d.reason,
        "editedArguments": d.edited_arguments.as_ref().map_or(Value::Null, struct_to_json),
        "argumentsSha256": d.arguments_sha256,
        "scope": scope,
    })
}

/// The exact bytes a decision's signature covers: [`SIGNING_CONTEXT`] then
/// the canonical JSON of [`signed_fields`]. The signature itself is not
/// covered.
pub fn signed_bytes(d: &Decision) -> Vec<u8> {
    let mut bytes = SIGNING_CONTEXT.as_bytes().to_vec();
    bytes.extend_from_slice(crate::canonical_json(&signed_fields(d)).as_bytes());
    bytes
}

/// Signs `d` with `key`, naming the key `key_id`; replaces any signature it had.
pub fn sign(d: &mut Decision, key_id: &str, key: &SigningKey) -> Result<(), InvalidKeyId> {
    check_key_id(key_id)?;
    let signature = key.sign(&signed_bytes(d));
    d.signature = Some(DecisionSignature {
        key_id: key_id.to_string(),
        signature: STANDARD.encode(signature.to_bytes()),
    });
    Ok(())
}

/// The public keys a worker trusts, by key id, as recorded in a run's
/// history: each key as base64 of its 32 bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedKeys {
    keys: BTreeMap<String, String>,
}

impl TrustedKeys {
    /// No trusted keys: every signed decision is refused.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts `key` under `key_id`.
    pub fn insert(&mut self, key_id: &str, key: &VerifyingKey) -> Result<(), InvalidKeyId> {
        check_key_id(key_id)?;
        self.keys
            .insert(key_id.to_string(), STANDARD.encode(key.as_bytes()));
        Ok(())
    }

    /// Trusts `key` under `key_id` (builder form).
    pub fn with(mut self, key_id: &str, key: &VerifyingKey) -> Result<Self, InvalidKeyId> {
        self.insert(key_id, key)?;
        Ok(self)
    }

    /// The key with this id, if trusted.
    pub fn get(&self, key_id: &str) -> Result<Option<VerifyingKey>, KeyError> {
        let Some(text) = self.keys.get(key_id) else {
            return Ok(None);
        };
        let bytes: [u8; 32] = STANDARD
            .decode(text)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| KeyError::Trusted(key_id.to_string()))?;
        VerifyingKey::from_bytes(&bytes)
            .map(Some)
            .map_err(|_| KeyError::Trusted(key_id.to_string()))
    }

    /// The ids of the trusted keys, sorted.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// How many keys are trusted.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Verifies a decision's signature against the trusted keys: `Ok(None)` when
/// it is unsigned, `Ok(Some(key id))` when a trusted key signed exactly
/// these fields (strict Ed25519 verification). Pure: runs in workflow code.
pub fn verify(d: &Decision, trusted: &TrustedKeys) -> Result<Option<String>, SignatureError> {
    let Some(signature) = &d.signature else {
        return Ok(None);
    };
    check_key_id(&signature.key_id)?;
    let key = trusted
        .get(&signature.key_id)?
        .ok_or_else(|| SignatureError::UnknownKey(signature.key_id.clone()))?;
    if signature.signature.len() != SIGNATURE_BASE64_CHARS {
        return Err(SignatureError::Malformed);
    }
    let bytes: [u8; 64] = STANDARD
        .decode(&signature.signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(SignatureError::Malformed)?;
    key.verify_strict(&signed_bytes(d), &Signature::from_bytes(&bytes))
        .map_err(|_| SignatureError::Mismatch(signature.key_id.clone()))?;
    Ok(Some(signature.key_id.clone()))
}

/// A key pair's private key from 32 secret bytes (e.g. from `/dev/urandom`).
pub fn signing_key_from_secret(secret: &[u8; 32]) -> SigningKey {
    SigningKey::from_bytes(secret)
}

/// Parses a private key file's text (PKCS#8 PEM).
pub fn parse_signing_key(pem: &str) -> Result<SigningKey, KeyError> {
    SigningKey::from_pkcs8_pem(pem.trim()).map_err(|e| KeyError::Private(e.to_string()))
}

/// Parses a public key file's text (SPKI PEM).
pub fn parse_verifying_key(pem: &str) -> Result<VerifyingKey, KeyError> {
    VerifyingKey::from_public_key_pem(pem.trim()).map_err(|e| KeyError::Public(e.to_string()))
}

/// A private key as PKCS#8 PEM text (LF line endings).
pub fn signing_key_pem(key: &SigningKey) -> Result<String, KeyError> {
    key.to_pkcs8_pem(LineEnding::LF)
        .map(|pem| pem.to_string())
        .map_err(|e| KeyError::Private(e.to_string()))
}

/// A public key as SPKI PEM text (LF line endings).
pub fn verifying_key_pem(key: &VerifyingKey) -> Result<String, KeyError> {
    key.to_public_key_pem(LineEnding::LF)
        .map_err(|e| KeyError::Public(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DecisionKind, DecisionScope, json_to_struct};

    fn key(seed: u8) -> SigningKey {
        signing_key_from_secret(&[seed; 32])
    }

    fn decision() -> Decision {
        Decision {
            approval_id: "payments-1~0a1b2c3d".into(),
            kind: DecisionKind::Approve as i32,
            reviewer: "bob@example.com".into(),
            reason: "invoice 42 matches the PO".into(),
            edited_arguments: Some(
                json_to_struct(&json!({"to": "ACME", "amount": 250, "memo": {"b": 1.5, "a": "é"}}))
                    .unwrap(),
            ),
            arguments_sha256: "ab".repeat(32),
            scope: DecisionScope::Once as i32,
            signature: None,
        }
    }

    /// Pins the signed bytes (and the signature under a fixed key) so other
    /// languages can check their implementation against these values.
    #[test]
    fn signed_bytes_are_pinned() {
        let d = decision();
        assert_eq!(
            String::from_utf8(signed_bytes(&d)).unwrap(),
            "countersign.v1.Decision\n{\"approvalId\":\"payments-1~0a1b2c3d\",\"argumentsSha256\":\"abababababababababababababababababababababababababababababababab\",\"editedArguments\":{\"amount\":250,\"memo\":{\"a\":\"é\",\"b\":1.5},\"to\":\"ACME\"},\"kind\":\"DECISION_KIND_APPROVE\",\"reason\":\"invoice 42 matches the PO\",\"reviewer\":\"bob@example.com\",\"scope\":\"DECISION_SCOPE_ONCE\"}"
        );
        let unsigned = Decision {
            approval_id: "wf~1".into(),
            kind: DecisionKind::Approve as i32,
            reviewer: "bob".into(),
            reason: "ok".into(),
            ..Default::default()
        };
        assert_eq!(
            String::from_utf8(signed_bytes(&unsigned)).unwrap(),
            "countersign.v1.Decision\n{\"approvalId\":\"wf~1\",\"argumentsSha256\":\"\",\"editedArguments\":null,\"kind\":\"DECISION_KIND_APPROVE\",\"reason\":\"ok\",\"reviewer\":\"bob\",\"scope\":\"DECISION_SCOPE_UNSPECIFIED\"}"
        );
        // Ed25519 is deterministic: the same key and bytes give this signature.
        let mut signed = unsigned.clone();
        sign(&mut signed, "finance-1", &key(7)).unwrap();
        let signature = signed.signature.unwrap();
        assert_eq!(signature.key_id, "finance-1");
        assert_eq!(signature.signature.len(), SIGNATURE_BASE64_CHARS);
        assert_eq!(signature.signature, PINNED_SIGNATURE);
        assert_eq!(
            STANDARD.encode(key(7).verifying_key().as_bytes()),
            PINNED_PUBLIC_KEY
        );
    }

    /// The second decision above signed by the secret `[7; 32]`.
    const PINNED_SIGNATURE: &str =
        "SmZeHizffe0P3EvCdgFsC+ZPl3+d+Ez2iu+91gDO9qkzJ7iKaCazIvX/JgLn3PNDDGeLkS3eUblTd4D4GpL6BA==";
    /// The public key of the secret `[7; 32]` (32 bytes of 0x07), base64.
    const PINNED_PUBLIC_KEY: &str = "6kpsY+KcUgq+9VB7Ey7F+ZVHdq6+vnuSQh7qaRRG0iw=";

    #[test]
    fn a_signed_decision_verifies_and_any_change_breaks_it() {
        let trusted = TrustedKeys::new()
            .with("finance-1", &key(1).verifying_key())
            .unwrap();
        let mut d = decision();
        assert_eq!(verify(&d, &trusted), Ok(None));
        sign(&mut d, "finance-1", &key(1)).unwrap();
        assert_eq!(verify(&d, &trusted), Ok(Some("finance-1".to_string())));

        type Change = Box<dyn Fn(&mut Decision)>;
        let changes: Vec<(&str, Change)> = vec![
            ("approvalId", Box::new(|d| d.approval_id.push('x'))),
            ("kind", Box::new(|d| d.kind = DecisionKind::Deny as i32)),
            (
                "reviewer",
                Box::new(|d| d.reviewer = "mallory@example.com".into()),
            ),
            ("reason", Box::new(|d| d.reason.push(' '))),
            ("editedArguments", Box::new(|d| d.edited_arguments = None)),
            (
                "editedArguments value",
                Box::new(|d| {
                    d.edited_arguments =
                        Some(json_to_struct(&json!({"to": "ACME", "amount": 2500})).unwrap())
                }),
            ),
            (
                "argumentsSha256",
                Box::new(|d| d.arguments_sha256 = "cd".repeat(32)),
            ),
            ("scope", Box::new(|d| d.scope = DecisionScope::Run as i32)),
        ];
        for (field, change) in changes {
            let mut changed = d.clone();
            change(&mut changed);
            assert_eq!(
                verify(&changed, &trusted),
                Err(SignatureError::Mismatch("finance-1".into())),
                "changing {field} must break the signature"
            );
        }

        let mut other_key = d.clone();
        sign(&mut other_key, "finance-1", &key(2)).unwrap();
        assert!(matches!(
            verify(&other_key, &trusted),
            Err(SignatureError::Mismatch(_))
        ));
        let mut untrusted = d.clone();
        sign(&mut untrusted, "intruder", &key(2)).unwrap();
        assert_eq!(
            verify(&untrusted, &trusted),
            Err(SignatureError::UnknownKey("intruder".into()))
        );
        let mut garbled = d.clone();
        garbled.signature.as_mut().unwrap().signature = "A".repeat(87) + "=";
        assert!(verify(&garbled, &trusted).is_err());
        garbled.signature.as_mut().unwrap().signature = "short".into();
        assert_eq!(verify(&garbled, &trusted), Err(SignatureError::Malformed));
        // The proto3 JSON round trip keeps the signature valid.
        let json = serde_json::to_string(&d).unwrap();
        let back: Decision = serde_json::from_str(&json).unwrap();
        assert_eq!(verify(&back, &trusted), Ok(Some("finance-1".to_string())));
    }

    #[test]
    fn key_ids_are_checked() {
        for ok in ["a", "finance-1", "ops_2024.key-A", &"k".repeat(64)] {
            assert_eq!(check_key_id(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".hidden", "a/b", "../x", "a b", "é", &"k".repeat(65)] {
            assert!(check_key_id(bad).is_err(), "{bad}");
        }
        assert!(sign(&mut decision(), "a/b", &key(1)).is_err());
    }

    #[test]
    fn key_text_round_trips() {
        let private = signing_key_pem(&key(3)).unwrap();
        assert!(private.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert_eq!(parse_signing_key(&private).unwrap().to_bytes(), [3; 32]);
        let public = verifying_key_pem(&key(3).verifying_key()).unwrap();
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert_eq!(
            parse_verifying_key(&public).unwrap(),
            key(3).verifying_key()
        );
        assert!(matches!(
            parse_signing_key(&public),
            Err(KeyError::Private(_))
        ));
        assert!(matches!(
            parse_verifying_key(&private),
            Err(KeyError::Public(_))
        ));
    }
}
