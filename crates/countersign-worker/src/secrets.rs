//! Secrets (API keys, tokens, passwords) are named in agent files by
//! environment variable and read here, on the worker, when a call is made:
//! no secret value ever enters a run's input or history.

/// The value of the environment variable `name` (trimmed); `what` says what
/// it holds, for the error. Unset and empty are refused alike, naming the
/// variable and never a value.
pub(crate) fn from_env(name: &str, what: &str) -> Result<String, String> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(value.trim().to_string()),
        _ => Err(format!(
            "the environment variable `{name}` ({what}) is not set on the worker"
        )),
    }
}
