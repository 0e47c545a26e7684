//! The server's configuration file (TOML): reviewers with their token
//! hashes and groups, and the Slack settings.
//!
//! ```toml
//! [[reviewers]]
//! id = "bob@example.com"                 # recorded as the reviewer of bob's decisions
//! token_sha256 = "9f86d0…"               # hex SHA-256 of bob's bearer token; never the token
//! groups = ["finance"]                   # may decide approvals whose approver groups include one of these
//! slack_user_id = "U024BE7LH"            # optional: bob's Slack user, for Approve / Deny buttons
//!
//! [slack]
//! signing_secret_env = "SLACK_SIGNING_SECRET"   # the variable holding the signing secret
//! bot_token_env = "SLACK_BOT_TOKEN"
//! api_base_url = "https://slack.com/api"
//!
//! [runs]
//! allow_inline_agents = false            # POST /runs {"agent": "<name>"} names an agent the workers serve
//!
//! [signing]
//! key_id = "serve-1"                     # workers trust it as <--trusted-keys DIR>/serve-1.pub
//! key_file = "/etc/countersign/serve-1.key"   # from `countersign keys new`; relative: to this file
//! ```

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

/// The configuration of `countersign serve`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Who may decide, and how they authenticate.
    #[serde(default)]
    pub reviewers: Vec<Reviewer>,
    /// Slack interactivity settings; absent: `/slack/interactions` answers 404.
    #[serde(default)]
    pub slack: Option<SlackConfig>,
    /// Dashboard settings.
    #[serde(default)]
    pub dashboard: DashboardConfig,
    /// What `POST /runs` may send.
    #[serde(default)]
    pub runs: RunsConfig,
    /// The key every decision is signed with; absent: decisions are sent
    /// unsigned (agents with `require_signed_decisions` refuse them).
    #[serde(default)]
    pub signing: Option<SigningConfig>,
    /// Who may call the codec endpoint from a browser (the Temporal Web UI).
    #[serde(default)]
    pub codec: CodecConfig,
}

/// The codec endpoint's browser callers (`POST /codec/decode`).
///
/// ```toml
/// [codec]
/// web_ui_origins = ["https://temporal.example.com"]   # the Web UI's origin
/// ```
///
/// A page from one of these origins may call the endpoint (CORS) and is
/// authenticated by the reviewer's dashboard session (the Web UI's "Include
/// cross-origin credentials" setting) as well as by a bearer token. None by
/// default: only the `temporal` CLI and other non-browser clients, with a
/// token.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodecConfig {
    /// The origins (`scheme://host[:port]`) of Web UIs allowed to call it.
    #[serde(default)]
    pub web_ui_origins: Vec<WebOrigin>,
}

/// A web origin, `http://host[:port]` or `https://host[:port]`, lower-case,
/// with no path, query or trailing slash: the form browsers send in
/// `Origin`, so a header matches by equality.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct WebOrigin(String);

impl WebOrigin {
    /// The most characters an origin may have.
    pub const MAX_LEN: usize = 256;

    /// Parses `text` as a web origin.
    pub fn parse(text: &str) -> Result<Self, String> {
        let refuse = |why: &str| {
            Err(format!(
                "`{}` is not a web origin ({why}); expected e.g. `http://localhost:8233`",
                text.chars().take(64).collect::<String>()
            ))
        };
        if text.len() > Self::MAX_LEN {
            return refuse("too long");
        }
        let Some((scheme, rest)) = text.split_once("://") else {
            return refuse("no scheme");
        };
        if scheme != "http" && scheme != "https" {
            return refuse("not http or https");
        }
        let host_port = rest.strip_suffix('/').unwrap_or(rest);
        if host_port.is_empty()
            || !host_port
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        {
            return refuse("a host and an optional port only");
        }
        Ok(Self(format!(
            "{scheme}://{}",
            host_port.to_ascii_lowercase()
        )))
    }

    /// The origin as browsers send it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for WebOrigin {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
    }
}

/// The key `countersign serve` signs every decision with.
///
/// ```toml
/// [signing]
/// key_id = "serve-1"
/// key_file = "keys/serve-1.key"   # PKCS#8 PEM, from `countersign keys new`
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {
    /// The key id workers know its public key by (`<id>.pub` in their
    /// `--trusted-keys` folder).
    pub key_id: String,
    /// The private key file (PKCS#8 PEM). A relative path is resolved
    /// against the configuration file's folder by [`ServerConfig::from_file`].
    pub key_file: PathBuf,
}

/// A reviewer: an identity, a token (as its hash) and groups.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reviewer {
    /// The identity recorded on decisions (an email or service name).
    pub id: String,
    /// Lowercase hex SHA-256 of the reviewer's bearer token.
    pub token_sha256: String,
    /// The groups the reviewer belongs to.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The reviewer's Slack user id, for decisions from Slack buttons.
    #[serde(default)]
    pub slack_user_id: Option<String>,
}

impl Reviewer {
    /// Whether this reviewer may decide `approval`: the run resolved who
    /// may (the agent's `[groups]` members of its approver groups, widened by
    /// escalation) into `approval.approvers`; empty means anyone. The run is
    /// the authority and checks again; this only lets front ends say so early.
    /// (`groups` here are shown to the reviewer, not used to decide.)
    pub fn may_decide(&self, approval: &countersign_proto::PendingApproval) -> bool {
        approval.approvers.is_empty() || approval.approvers.contains(&self.id)
    }
}

/// Slack settings; secrets are named by environment variable.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The environment variable holding the app's signing secret.
    #[serde(default = "default_signing_secret_env")]
    pub signing_secret_env: String,
    /// The environment variable holding the bot token (for `views.open`).
    #[serde(default = "default_bot_token_env")]
    pub bot_token_env: String,
    /// The Slack Web API base URL.
    #[serde(default = "default_slack_api")]
    pub api_base_url: String,
}

fn default_signing_secret_env() -> String {
    "SLACK_SIGNING_SECRET".into()
}
fn default_bot_token_env() -> String {
    "SLACK_BOT_TOKEN".into()
}
fn default_slack_api() -> String {
    "https://slack.com/api".into()
}

/// Dashboard settings.
///
/// ```toml
/// [dashboard]
/// secure_cookies = true                        # behind HTTPS
/// session_key_env = "COUNTERSIGN_SESSION_KEY"  # hex or base64 of at least 32 bytes
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardConfig {
    /// Mark the session cookie `Secure` (serve the dashboard over HTTPS).
    #[serde(default)]
    pub secure_cookies: bool,
    /// The environment variable holding the key that signs session cookies
    /// (hex or base64 of at least 32 bytes): give every replica the same
    /// one, and sessions survive restarts. Unset: a random key made at
    /// start, so sessions end when `countersign serve` restarts.
    #[serde(default)]
    pub session_key_env: Option<String>,
}

/// What `POST /runs` may send. Runs name an agent the workers serve
/// (`countersign worker --agents DIR`); the server needs no agent files.
///
/// ```toml
/// [runs]
/// allow_inline_agents = false    # the default; see below
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsConfig {
    /// Accept agent definitions inline (JSON) in `POST /runs`. Off by
    /// default: an inline agent brings its own tools, commands, URLs,
    /// approvers and secret variable names, so every token holder could run
    /// commands on the worker, read its environment or approve their own
    /// calls. Workers refuse them too unless started with
    /// `--allow-inline-agents`.
    #[serde(default)]
    pub allow_inline_agents: bool,
}

/// Why a configuration file was refused. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read the server config: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file is not valid TOML or does not fit the format (line and column included).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A value that cannot work.
    #[error("{path}: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

impl ServerConfig {
    /// Reads and validates a configuration file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        let mut config = Self::from_toml(&text, path)?;
        if let Some(signing) = &mut config.signing
            && signing.key_file.is_relative()
        {
            let base = path.parent().unwrap_or(Path::new("."));
            signing.key_file = base.join(&signing.key_file);
        }
        Ok(config)
    }

    /// Parses and validates configuration TOML; `path` names it in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: ServerConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let invalid = |problem: String| ConfigError::Invalid {
            path: path.to_owned(),
            problem,
        };
        let mut ids = std::collections::HashSet::new();
        let mut hashes = std::collections::HashSet::new();
        for (i, r) in config.reviewers.iter().enumerate() {
            if r.id.trim().is_empty() {
                return Err(invalid(format!("reviewers[{i}].id must not be empty")));
            }
            if r.token_sha256.len() != 64 || !r.token_sha256.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Err(invalid(format!(
                    "reviewers[{i}].token_sha256 must be 64 hex digits (the SHA-256 of the token, e.g. from `countersign token new`)"
                )));
            }
            if !ids.insert(r.id.as_str()) {
                return Err(invalid(format!(
                    "reviewers[{i}].id `{}` appears twice",
                    r.id
                )));
            }
            if !hashes.insert(r.token_sha256.to_ascii_lowercase()) {
                return Err(invalid(format!(
                    "reviewers[{i}].token_sha256 is the same as another reviewer's"
                )));
            }
        }
        if let Some(signing) = &config.signing {
            countersign_proto::signing::check_key_id(&signing.key_id)
                .map_err(|e| invalid(format!("signing.key_id: {e}")))?;
            if signing.key_file.as_os_str().is_empty() {
                return Err(invalid(
                    "signing.key_file must name the private key file (from `countersign keys new`)"
                        .into(),
                ));
            }
        }
        if let Some(name) = &config.dashboard.session_key_env
            && name.trim().is_empty()
        {
            return Err(invalid(
                "dashboard.session_key_env must name an environment variable (or be left out)"
                    .into(),
            ));
        }
        Ok(config)
    }

    /// The reviewer whose token this is. Compares the token's SHA-256 with
    /// every reviewer's in constant time, so the time taken does not depend
    /// on how much of a hash matched, nor on which reviewer it is.
    pub fn reviewer_by_token(&self, token: &str) -> Option<&Reviewer> {
        let hash = token_sha256(token);
        let mut found = None;
        for reviewer in &self.reviewers {
            let stored = reviewer.token_sha256.to_ascii_lowercase();
            if bool::from(stored.as_bytes().ct_eq(hash.as_bytes())) && found.is_none() {
                found = Some(reviewer);
            }
        }
        found
    }

    /// The reviewer with this id.
    pub fn reviewer_by_id(&self, id: &str) -> Option<&Reviewer> {
        self.reviewers.iter().find(|r| r.id == id)
    }

    /// The reviewer with this Slack user id.
    pub fn reviewer_by_slack_user(&self, slack_user_id: &str) -> Option<&Reviewer> {
        self.reviewers
            .iter()
            .find(|r| r.slack_user_id.as_deref() == Some(slack_user_id))
    }
}

/// Lowercase hex SHA-256 of a token: what the config stores.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_names_a_valid_key_id_and_a_file_relative_to_the_config() {
        let dir = std::env::temp_dir().join(format!("countersign-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("server.toml");
        std::fs::write(
            &path,
            "[signing]\nkey_id = \"serve-1\"\nkey_file = \"keys/serve-1.key\"\n",
        )
        .unwrap();
        let signing = ServerConfig::from_file(&path).unwrap().signing.unwrap();
        assert_eq!(signing.key_id, "serve-1");
        assert_eq!(signing.key_file, dir.join("keys/serve-1.key"));
        std::fs::remove_dir_all(&dir).unwrap();

        let refused = ServerConfig::from_toml(
            "[signing]\nkey_id = \"../serve\"\nkey_file = \"k.key\"\n",
            Path::new("s.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(refused.contains("signing.key_id"), "{refused}");
        assert!(
            ServerConfig::from_toml("[signing]\nkey_id = \"a\"\n", Path::new("s.toml")).is_err()
        );
        assert!(
            ServerConfig::from_toml("", Path::new("s.toml"))
                .unwrap()
                .signing
                .is_none()
        );
    }
}
