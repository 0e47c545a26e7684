//! The agents a worker serves: code and policy are deployed with the worker,
//! a run's input only names its agent.
//!
//! [`AgentRegistry::load`] reads every `*.toml` under a folder at worker
//! start (paths inside each file resolve against that file, on the worker),
//! validates each with [`Agent::new`], and refuses the whole folder on the
//! first broken file or two definitions of one name, naming the file, field,
//! line and column. Sub-agents are served by name too, so a child run is
//! started by name and hash, never with a definition in its input.
//!
//! Inline definitions (a whole agent in a run's input) are accepted only
//! when the worker allows them ([`AgentRegistry::allowing_inline`]): an
//! inline agent chooses its own commands, URLs, approvers and policy.

use countersign_payloads::{PayloadStore, TranscriptStore};
use countersign_policy::Agent;
use countersign_policy::agent::{AgentFile, AgentFileError};
use countersign_proto::signing::{InvalidKeyId, KeyError, TrustedKeys, parse_verifying_key};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What the `resolve_agent` activity is asked: the agent a run names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentLookup {
    /// The agent's name.
    pub name: String,
    /// The run carries its own definition (only its permission is asked).
    pub inline: bool,
}

/// The `resolve_agent` activity's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolvedAgent {
    /// The registry's definition; `None` when the run may use its inline one.
    pub definition: Option<Box<AgentFile>>,
    /// The public keys the worker trusts to sign decisions
    /// (`--trusted-keys`), recorded in the run's history so that verifying
    /// a signature in workflow code is deterministic. Absent in runs
    /// resolved before signed decisions: they trust no key.
    #[serde(default, skip_serializing_if = "TrustedKeys::is_empty")]
    pub trusted_keys: TrustedKeys,
    /// Whether the worker moves large payloads to a payload store
    /// (`--payload-store`), recorded in the run's history so the run's
    /// payload limit is the same on replay: with a store, a payload over
    /// the threshold travels as a small reference. Absent (false) in runs
    /// resolved before the store and on workers without one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub payload_store: bool,
}

/// Why a folder of trusted public keys cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TrustedKeysError {
    /// The folder or a file cannot be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The folder or file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// A file's stem is not a valid key id.
    #[error("{path}: {error}")]
    KeyId {
        /// The file.
        path: PathBuf,
        /// Why the stem is refused.
        error: InvalidKeyId,
    },
    /// A file is not an SPKI PEM Ed25519 public key.
    #[error("{path}: {error}")]
    Key {
        /// The file.
        path: PathBuf,
        /// Why it does not parse.
        error: KeyError,
    },
}

/// Loads every `*.pub` file directly in `dir` as a trusted public key (SPKI
/// PEM), its key id being the file's stem. An empty folder trusts no key.
pub fn load_trusted_keys(dir: &Path) -> Result<TrustedKeys, TrustedKeysError> {
    let read = |path: &Path, error| TrustedKeysError::Read {
        path: path.to_owned(),
        error,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| read(dir, e))? {
        let path = entry.map_err(|e| read(dir, e))?.path();
        if path.extension().is_some_and(|e| e == "pub") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    let mut keys = TrustedKeys::new();
    for path in paths {
        let id = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&path).map_err(|e| read(&path, e))?;
        let key = parse_verifying_key(&text).map_err(|error| TrustedKeysError::Key {
            path: path.clone(),
            error,
        })?;
        keys.insert(&id, &key)
            .map_err(|error| TrustedKeysError::KeyId { path, error })?;
    }
    Ok(keys)
}

/// Why a worker cannot serve its agents folder.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The folder (or a folder below it) cannot be listed.
    #[error("cannot read the agents folder {dir}: {error}")]
    Folder {
        /// The folder.
        dir: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// A file does not load or breaks a rule.
    #[error(transparent)]
    File(#[from] AgentFileError),
    /// A file's OpenAPI documents do not load.
    #[error("{path}: {problems}")]
    Sources {
        /// The file.
        path: PathBuf,
        /// One line per problem.
        problems: String,
    },
    /// Two different definitions have one name.
    #[error(
        "{path}: field `name`{at}: agent `{name}` is also defined, differently, by {other}; agent names must be unique in the agents folder (sub-agents included)"
    )]
    Duplicate {
        /// The file with the second definition.
        path: PathBuf,
        /// Where its name is.
        at: String,
        /// The name.
        name: String,
        /// The file with the first.
        other: PathBuf,
    },
}

/// Why a run's agent cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No agent of that name.
    #[error("unknown agent `{name}`: this worker serves {known}")]
    Unknown {
        /// The name asked for (cut to 128 characters).
        name: String,
        /// The names served, listed.
        known: String,
    },
    /// The run carries a definition and the worker does not take them.
    #[error(
        "this worker does not accept inline agent definitions (agent `{name}`): start runs by name from its registry (`countersign worker --agents DIR`), or start the worker with --allow-inline-agents (COUNTERSIGN_ALLOW_INLINE_AGENTS=true) for local development"
    )]
    InlineRefused {
        /// The inline agent's name (cut to 128 characters).
        name: String,
    },
}

/// The agents a worker serves, by name.
#[derive(Debug, Clone, Default)]
pub struct AgentRegistry {
    agents: BTreeMap<String, (Agent, PathBuf)>,
    allow_inline: bool,
    trusted_keys: TrustedKeys,
    /// Where runs keep their transcripts, when the worker has a payload store.
    transcripts: Option<TranscriptStore>,
}

impl AgentRegistry {
    /// No agents, inline definitions refused.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Loads every `*.toml` under `dir` (recursively, in name order), with
    /// `${VAR}` references taken from the worker's environment.
    pub fn load(dir: &Path) -> Result<Self, RegistryError> {
        Self::load_with_env(dir, &|name| std::env::var(name).ok())
    }

    /// [`AgentRegistry::load`] with `${VAR}` looked up in `env`.
    pub fn load_with_env(
        dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, RegistryError> {
        let mut registry = Self::empty();
        for path in toml_files(dir)? {
            let file = AgentFile::from_file_with_env(&path, env)?;
            let problems = crate::catalog::preflight(&file);
            if !problems.is_empty() {
                return Err(RegistryError::Sources {
                    path,
                    problems: problems.join("; "),
                });
            }
            let agent = Agent::new(file).map_err(|e| AgentFileError::Invalid {
                path: path.clone(),
                field: e.field,
                at: None,
                problem: e.problem,
            })?;
            registry.add(agent, &path)?;
        }
        Ok(registry)
    }

    /// Adds `agent` (from `path`) and its sub-agents.
    fn add(&mut self, agent: Agent, path: &Path) -> Result<(), RegistryError> {
        for agent in agent.with_sub_agents() {
            match self.agents.get(&agent.name) {
                Some((known, _)) if known.sha256() == agent.sha256() => {}
                Some((_, other)) => {
                    let at = std::fs::read_to_string(path)
                        .ok()
                        .and_then(|text| countersign_policy::agent::locate_field(&text, "name"))
                        .map(|(line, column)| format!(" (line {line}, column {column})"))
                        .unwrap_or_default();
                    return Err(RegistryError::Duplicate {
                        path: path.to_owned(),
                        at,
                        name: agent.name.clone(),
                        other: other.clone(),
                    });
                }
                None => {
                    self.agents
                        .insert(agent.name.clone(), (agent.clone(), path.to_owned()));
                }
            }
        }
        Ok(())
    }

    /// The same registry, accepting inline definitions when `allow` is true.
    pub fn allowing_inline(mut self, allow: bool) -> Self {
        self.allow_inline = allow;
        self
    }

    /// The same registry, trusting `keys` to sign decisions: every run it
    /// resolves records them (see [`ResolvedAgent::trusted_keys`]).
    pub fn with_trusted_keys(mut self, keys: TrustedKeys) -> Self {
        self.trusted_keys = keys;
        self
    }

    /// The same registry, telling every run it resolves whether the
    /// worker's client has a payload store (see
    /// [`ResolvedAgent::payload_store`]). Set it exactly when the client's
    /// data converter has the store's codec (`countersign_payloads::install`).
    /// Runs then also keep their transcripts in it (the `model_turn`
    /// activity reads and writes them).
    pub fn with_payload_store(mut self, store: Option<&PayloadStore>) -> Self {
        self.transcripts = store.map(PayloadStore::transcripts);
        self
    }

    /// Whether runs are told that large payloads go to a payload store.
    pub fn has_payload_store(&self) -> bool {
        self.transcripts.is_some()
    }

    /// Where runs keep their transcripts, when the worker has a payload store.
    pub fn transcripts(&self) -> Option<&TranscriptStore> {
        self.transcripts.as_ref()
    }

    /// The public keys trusted to sign decisions.
    pub fn trusted_keys(&self) -> &TrustedKeys {
        &self.trusted_keys
    }

    /// Whether inline definitions are accepted.
    pub fn allows_inline(&self) -> bool {
        self.allow_inline
    }

    /// The agent of that name.
    pub fn get(&self, name: &str) -> Option<&Agent> {
        self.agents.get(name).map(|(agent, _)| agent)
    }

    /// Every agent served, by name, with the file it came from.
    pub fn agents(&self) -> impl Iterator<Item = (&Agent, &Path)> {
        self.agents
            .values()
            .map(|(agent, path)| (agent, path.as_path()))
    }

    /// How many agents are served.
    pub fn len(&self) -> usize {
        self.agents.len()
    }

    /// Whether no agent is served.
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    /// Answers a run's lookup: the registry's definition, or permission to
    /// use its inline one.
    pub fn resolve(&self, lookup: &AgentLookup) -> Result<ResolvedAgent, ResolveError> {
        let name = countersign_policy::agent::excerpt(&lookup.name, 128);
        if lookup.inline {
            if !self.allow_inline {
                return Err(ResolveError::InlineRefused { name });
            }
            return Ok(ResolvedAgent {
                definition: None,
                trusted_keys: self.trusted_keys.clone(),
                payload_store: self.transcripts.is_some(),
            });
        }
        match self.get(&lookup.name) {
            Some(agent) => Ok(ResolvedAgent {
                definition: Some(Box::new(agent.file().clone())),
                trusted_keys: self.trusted_keys.clone(),
                payload_store: self.transcripts.is_some(),
            }),
            None => Err(ResolveError::Unknown {
                name,
                known: self.known_names(),
            }),
        }
    }

    /// The names served, for messages.
    fn known_names(&self) -> String {
        if self.agents.is_empty() {
            return "no agents (give it a folder of agent files with --agents DIR)".into();
        }
        let names: Vec<String> = self.agents.keys().map(|n| format!("`{n}`")).collect();
        names.join(", ")
    }
}

/// Every `*.toml` file under `dir`, sorted, recursively.
fn toml_files(dir: &Path) -> Result<Vec<PathBuf>, RegistryError> {
    let folder_error = |error| RegistryError::Folder {
        dir: dir.to_owned(),
        error,
    };
    let mut files = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(folder_error)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(|error| RegistryError::Folder {
            dir: dir.to_owned(),
            error,
        })?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files.extend(toml_files(&path)?);
        } else if path.extension().is_some_and(|e| e == "toml") {
            files.push(path);
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    fn agent(name: &str, say: &str) -> String {
        format!(
            "name = \"{name}\"\n[model]\nprovider = \"scripted\"\n[[model.steps]]\nsay = \"{say}\"\n"
        )
    }

    #[test]
    fn agents_are_served_by_name_with_their_sub_agents() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("team")).unwrap();
        write(
            dir.path(),
            "parent.toml",
            &(agent("parent", "hi")
                + "[[tools]]\nname = \"helper\"\nagent = { file = \"subs/helper.agent\" }\n"),
        );
        std::fs::create_dir(dir.path().join("subs")).unwrap();
        write(
            &dir.path().join("subs"),
            "helper.agent",
            &agent("helper", "help"),
        );
        write(&dir.path().join("team"), "other.toml", &agent("other", "x"));
        write(dir.path(), "notes.txt", "not an agent");
        let registry = AgentRegistry::load(dir.path()).unwrap();
        let names: Vec<&str> = registry.agents().map(|(a, _)| a.name.as_str()).collect();
        assert_eq!(names, ["helper", "other", "parent"]);
        let lookup = |name: &str| AgentLookup {
            name: name.into(),
            inline: false,
        };
        assert!(
            registry
                .resolve(&lookup("helper"))
                .unwrap()
                .definition
                .is_some()
        );
        let e = registry.resolve(&lookup("nobody")).unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown agent `nobody`: this worker serves `helper`, `other`, `parent`"
        );
    }

    #[test]
    fn inline_definitions_need_the_worker_to_allow_them() {
        let inline = AgentLookup {
            name: "x".into(),
            inline: true,
        };
        let e = AgentRegistry::empty()
            .resolve(&inline)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--allow-inline-agents"), "{e}");
        let allowed = AgentRegistry::empty().allowing_inline(true);
        assert_eq!(allowed.resolve(&inline).unwrap().definition, None);
    }

    #[test]
    fn a_broken_file_or_a_duplicate_name_stops_the_load_with_file_field_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.toml", &agent("same", "one"));
        write(dir.path(), "b.toml", &agent("same", "two"));
        let e = AgentRegistry::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("b.toml: field `name` (line 1, column 1)"), "{e}");
        assert!(e.contains("a.toml"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "pay.toml",
            &(agent("pay", "x")
                + "[[tools]]\nname = \"pay\"\neffect = \"read\"\nbuiltin = { kind = \"payment_request\", url = \"http://127.0.0.1:9\" }\n"),
        );
        let e = AgentRegistry::load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("pay.toml: field `tools[0].effect` (line 8, column 1)"),
            "{e}"
        );
        assert!(e.contains("must be `money`"), "{e}");

        let missing = AgentRegistry::load(&dir.path().join("nowhere")).unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("cannot read the agents folder")
        );
    }
}
