//! Dashboard sessions: the `countersign_session` cookie.
//!
//! The cookie never holds a reviewer's token. It holds
//! `base64url(v1:<expiry unix secs>:<reviewer id>)` `.`
//! `base64url(HMAC-SHA256(key, label, payload, the reviewer's token hash))`.
//! The server keeps no session state: a cookie is valid while its signature
//! checks out with the server's [`SessionKey`], its expiry is in the future,
//! and its reviewer is still in the config with the same token. Removing a
//! reviewer, or giving them a new token, ends their sessions; so does a new
//! key (a restart without `[dashboard] session_key_env`).

use crate::config::{DashboardConfig, Reviewer, ServerConfig};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The dashboard's session cookie: a signed reviewer id and expiry
/// (HttpOnly, SameSite=Strict).
pub const SESSION_COOKIE: &str = "countersign_session";
/// How long a dashboard session lasts.
pub const SESSION_MAX_AGE: Duration = Duration::from_secs(12 * 3600);
/// The shortest key accepted from `session_key_env`, in bytes.
pub const MIN_KEY_BYTES: usize = 32;
/// What the signature covers first (domain separation from other MACs).
const SESSION_LABEL: &[u8] = b"countersign dashboard session v1";
/// The payload's version prefix.
const PAYLOAD_VERSION: &str = "v1";

/// The key that signs session cookies.
#[derive(Clone)]
pub struct SessionKey {
    key: Arc<[u8]>,
    source: KeySource,
}

/// Where a [`SessionKey`] came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The environment variable named by `[dashboard] session_key_env`.
    Env(String),
    /// Random bytes made at start: sessions end when the process does.
    Random,
    /// Given by the caller ([`SessionKey::from_bytes`]).
    Bytes,
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself.
        f.debug_struct("SessionKey")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Why no session key could be made.
#[derive(Debug, thiserror::Error)]
pub enum SessionKeyError {
    /// `session_key_env` names a variable that is unset or empty.
    #[error(
        "[dashboard] session_key_env names `{0}`, which is not set: set it to the hex or base64 of at least {MIN_KEY_BYTES} random bytes (e.g. `openssl rand -hex 32`), the same on every replica"
    )]
    Unset(String),
    /// The variable's value is not hex or base64 of enough bytes.
    #[error("the session key in `{variable}` {problem}")]
    Invalid {
        /// The variable.
        variable: String,
        /// What is wrong with its value.
        problem: String,
    },
    /// Fewer than [`MIN_KEY_BYTES`] bytes given.
    #[error("a session key needs at least {MIN_KEY_BYTES} bytes, got {0}")]
    TooShort(usize),
    /// The OS's random source could not be read.
    #[error("cannot make a session key: reading /dev/urandom: {0}")]
    Random(std::io::Error),
}

/// Why a session cookie was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Not of the cookie's form (or not made by this server's format).
    #[error("malformed session cookie")]
    Malformed,
    /// The reviewer it names is not in the config.
    #[error("the session's reviewer is no longer configured")]
    UnknownReviewer,
    /// The signature does not match: forged, altered, another key, or the
    /// reviewer's token changed since.
    #[error("the session cookie's signature does not match")]
    BadSignature,
    /// Past its expiry.
    #[error("the session has expired")]
    Expired,
}

impl SessionKey {
    /// The key `config` asks for: from the variable `session_key_env` names
    /// (hex or base64, at least [`MIN_KEY_BYTES`] bytes), else random.
    pub fn from_config(config: &DashboardConfig) -> Result<Self, SessionKeyError> {
        let Some(variable) = &config.session_key_env else {
            return Self::random();
        };
        let value = std::env::var(variable).unwrap_or_default();
        if value.trim().is_empty() {
            return Err(SessionKeyError::Unset(variable.clone()));
        }
        let bytes = parse_key(&value).map_err(|problem| SessionKeyError::Invalid {
            variable: variable.clone(),
            problem,
        })?;
        Ok(Self {
            key: bytes.into(),
            source: KeySource::Env(variable.clone()),
        })
    }

    /// 32 random bytes from `/dev/urandom`.
    pub fn random() -> Result<Self, SessionKeyError> {
        use std::io::Read;
        let mut bytes = [0u8; MIN_KEY_BYTES];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(SessionKeyError::Random)?;
        Ok(Self {
            key: bytes.to_vec().into(),
            source: KeySource::Random,
        })
    }

    /// A key from bytes (at least [`MIN_KEY_BYTES`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SessionKeyError> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(SessionKeyError::TooShort(bytes.len()));
        }
        Ok(Self {
            key: bytes.into(),
            source: KeySource::Bytes,
        })
    }

    /// Where the key came from.
    pub fn source(&self) -> &KeySource {
        &self.source
    }

    /// Whether sessions signed with this key end when the process does
    /// (a random key made at start).
    pub fn is_ephemeral(&self) -> bool {
        self.source == KeySource::Random
    }

    /// A session cookie value for `reviewer`, valid until `expires_at`
    /// (unix seconds).
    pub fn issue(&self, reviewer: &Reviewer, expires_at: u64) -> String {
        let payload = format!("{PAYLOAD_VERSION}:{expires_at}:{}", reviewer.id);
        let tag = self
            .mac(payload.as_bytes(), reviewer)
            .finalize()
            .into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// A session cookie value for `reviewer` that lasts [`SESSION_MAX_AGE`] from now.
    pub fn issue_now(&self, reviewer: &Reviewer) -> String {
        self.issue(reviewer, unix_now() + SESSION_MAX_AGE.as_secs())
    }

    /// The reviewer of a session cookie value, if it is valid at `now`
    /// (unix seconds): signed with this key (constant-time comparison), for
    /// a reviewer still in `config` with the same token, and not expired.
    pub fn verify<'a>(
        &self,
        value: &str,
        config: &'a ServerConfig,
        now: u64,
    ) -> Result<&'a Reviewer, SessionError> {
        let (payload, tag) = value.split_once('.').ok_or(SessionError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|p| String::from_utf8(p).ok())
            .ok_or(SessionError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| SessionError::Malformed)?;
        let mut fields = payload.splitn(3, ':');
        let (Some(PAYLOAD_VERSION), Some(expires_at), Some(id)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(SessionError::Malformed);
        };
        let expires_at: u64 = expires_at.parse().map_err(|_| SessionError::Malformed)?;
        let reviewer = config
            .reviewer_by_id(id)
            .ok_or(SessionError::UnknownReviewer)?;
        self.mac(payload.as_bytes(), reviewer)
            .verify_slice(&tag)
            .map_err(|_| SessionError::BadSignature)?;
        if expires_at <= now {
            return Err(SessionError::Expired);
        }
        Ok(reviewer)
    }

    /// The reviewer of a session cookie value, if it is valid now.
    pub fn verify_now<'a>(
        &self,
        value: &str,
        config: &'a ServerConfig,
    ) -> Result<&'a Reviewer, SessionError> {
        self.verify(value, config, unix_now())
    }

    /// HMAC-SHA256 over the label, the payload and the reviewer's token
    /// hash, so a new token ends the sessions made with the old one.
    fn mac(&self, payload: &[u8], reviewer: &Reviewer) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(SESSION_LABEL);
        mac.update(&[0]);
        mac.update(payload);
        mac.update(&[0]);
        mac.update(reviewer.token_sha256.to_ascii_lowercase().as_bytes());
        mac
    }
}

/// A key given as hex or base64 (standard or URL-safe, padded or not),
/// at least [`MIN_KEY_BYTES`] bytes; surrounding whitespace is ignored.
pub fn parse_key(text: &str) -> Result<Vec<u8>, String> {
    let text = text.trim();
    let bytes = if text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).map_err(|e| format!("is not hex: {e}"))?
    } else {
        [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(text).ok())
            .ok_or("is neither hex nor base64")?
    };
    if bytes.len() < MIN_KEY_BYTES {
        return Err(format!(
            "has {} bytes; at least {MIN_KEY_BYTES} are needed (e.g. `openssl rand -hex 32`)",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// Seconds since the Unix epoch (session expiry, Slack's signature window).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::token_sha256;

    const TOKEN: &str = "cs_secret-token-of-bob";
    const NOW: u64 = 1_800_000_000;

    fn config() -> ServerConfig {
        ServerConfig {
            reviewers: vec![
                Reviewer {
                    id: "bob@example.com".into(),
                    token_sha256: token_sha256(TOKEN),
                    groups: vec![],
                    slack_user_id: None,
                },
                Reviewer {
                    id: "carol:ops@example.com".into(),
                    token_sha256: token_sha256("carol"),
                    groups: vec![],
                    slack_user_id: None,
                },
            ],
            ..Default::default()
        }
    }

    fn key_of(byte: u8) -> SessionKey {
        SessionKey::from_bytes(&[byte; 32]).unwrap()
    }

    #[test]
    fn a_session_names_its_reviewer_until_it_expires() {
        let config = config();
        let key = key_of(7);
        let bob = &config.reviewers[0];
        let value = key.issue(bob, NOW + 60);
        assert_eq!(key.verify(&value, &config, NOW).unwrap().id, bob.id);
        assert_eq!(
            key.verify(&value, &config, NOW + 60),
            Err(SessionError::Expired)
        );
        // Ids with the separator work.
        let carol = &config.reviewers[1];
        let value = key.issue(carol, NOW + 60);
        assert_eq!(key.verify(&value, &config, NOW).unwrap().id, carol.id);
    }

    #[test]
    fn the_cookie_never_holds_the_token_or_its_hash() {
        let config = config();
        let bob = &config.reviewers[0];
        let value = key_of(7).issue(bob, NOW + 60);
        assert!(!value.contains(TOKEN), "{value}");
        assert!(!value.contains(&bob.token_sha256), "{value}");
        let decoded = value
            .split('.')
            .filter_map(|part| URL_SAFE_NO_PAD.decode(part).ok())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(!decoded.contains(TOKEN), "{decoded}");
        assert!(!decoded.contains(&bob.token_sha256), "{decoded}");
        // Cookie-safe as is: base64url and a dot.
        assert!(
            value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        );
    }

    #[test]
    fn forged_tampered_and_foreign_sessions_are_refused() {
        let config = config();
        let key = key_of(7);
        let bob = &config.reviewers[0];
        let value = key.issue(bob, NOW + 60);
        let (payload, tag) = value.split_once('.').unwrap();

        // Another key (another server, or a restart with a random key).
        assert_eq!(
            key_of(8).verify(&value, &config, NOW),
            Err(SessionError::BadSignature)
        );
        // A later expiry, or another reviewer, with the old signature.
        for forged in [
            format!("v1:{}:bob@example.com", NOW + 10_000_000),
            "v1:1900000000:carol:ops@example.com".to_string(),
        ] {
            let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(forged));
            assert_eq!(
                key.verify(&forged, &config, NOW),
                Err(SessionError::BadSignature),
                "{forged}"
            );
        }
        // A flipped character of the signature.
        let mut flipped = tag.to_string().into_bytes();
        flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
        let flipped = format!("{payload}.{}", String::from_utf8(flipped).unwrap());
        assert_eq!(
            key.verify(&flipped, &config, NOW),
            Err(SessionError::BadSignature)
        );
        // No signature, garbage, the raw token, an empty value.
        for bad in [
            payload.to_string(),
            "x.y".into(),
            TOKEN.into(),
            String::new(),
        ] {
            assert_eq!(
                key.verify(&bad, &config, NOW),
                Err(SessionError::Malformed),
                "{bad}"
            );
        }
        // An unsigned reviewer who is not configured.
        let stranger = format!(
            "{}.{tag}",
            URL_SAFE_NO_PAD.encode(format!("v1:{}:mallory@example.com", NOW + 60))
        );
        assert_eq!(
            key.verify(&stranger, &config, NOW),
            Err(SessionError::UnknownReviewer)
        );
    }

    #[test]
    fn removing_a_reviewer_or_changing_their_token_ends_their_sessions() {
        let config = config();
        let key = key_of(7);
        let value = key.issue(&config.reviewers[0], NOW + 60);

        let mut removed = config.clone();
        removed.reviewers.remove(0);
        assert_eq!(
            key.verify(&value, &removed, NOW),
            Err(SessionError::UnknownReviewer)
        );

        let mut rotated = config.clone();
        rotated.reviewers[0].token_sha256 = token_sha256("a new token");
        assert_eq!(
            key.verify(&value, &rotated, NOW),
            Err(SessionError::BadSignature)
        );
        // The hash's case is not a new token.
        let mut upper = config.clone();
        upper.reviewers[0].token_sha256 = upper.reviewers[0].token_sha256.to_ascii_uppercase();
        assert!(key.verify(&value, &upper, NOW).is_ok());
    }

    #[test]
    fn keys_are_hex_or_base64_of_32_bytes_or_more() {
        let bytes: Vec<u8> = (0u8..32).collect();
        assert_eq!(parse_key(&hex::encode(&bytes)).unwrap(), bytes);
        assert_eq!(
            parse_key(&format!(" {}\n", hex::encode_upper(&bytes))).unwrap(),
            bytes
        );
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            let long: Vec<u8> = (200u8..=255).collect();
            assert_eq!(parse_key(&engine.encode(&long)).unwrap(), long);
        }
        assert!(
            parse_key(&hex::encode([1u8; 31]))
                .unwrap_err()
                .contains("31 bytes")
        );
        assert!(parse_key(&STANDARD.encode([1u8; 16])).is_err());
        assert!(parse_key("not a key!").unwrap_err().contains("neither"));
        assert!(SessionKey::from_bytes(&[0; 31]).is_err());
        assert!(SessionKey::random().unwrap().is_ephemeral());
        assert!(!format!("{:?}", key_of(7)).contains("7, 7"));
    }

    #[test]
    fn the_key_comes_from_the_named_variable() {
        let variable = format!("COUNTERSIGN_TEST_SESSION_KEY_{}", std::process::id());
        let config = DashboardConfig {
            session_key_env: Some(variable.clone()),
            ..Default::default()
        };
        assert!(matches!(
            SessionKey::from_config(&config),
            Err(SessionKeyError::Unset(v)) if v == variable
        ));
        // SAFETY: a variable only this test reads.
        unsafe { std::env::set_var(&variable, "short") };
        assert!(matches!(
            SessionKey::from_config(&config),
            Err(SessionKeyError::Invalid { .. })
        ));
        unsafe { std::env::set_var(&variable, hex::encode([9u8; 32])) };
        let from_env = SessionKey::from_config(&config).unwrap();
        assert_eq!(from_env.source(), &KeySource::Env(variable.clone()));
        assert!(!from_env.is_ephemeral());
        // Two servers with the same key accept each other's sessions.
        let config_file = self::config();
        let value = from_env.issue(&config_file.reviewers[0], NOW + 60);
        assert!(key_of(9).verify(&value, &config_file, NOW).is_ok());
        unsafe { std::env::remove_var(&variable) };
        assert!(
            SessionKey::from_config(&DashboardConfig::default())
                .unwrap()
                .is_ephemeral()
        );
    }
}
