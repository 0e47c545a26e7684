//! Connection settings: the Temporal SDK's envconfig (environment variables
//! and `temporal.toml` profiles), loaded and checked without connecting, so
//! they can be inspected and tested, and a bad file is reported by name.

use crate::ApprovalsError;
use std::collections::HashMap;
use std::fmt;
use temporalio_client::envconfig::{
    ClientConfigProfile, DataSource, LoadClientConfigProfileOptions,
};
use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions, TlsOptions};
use temporalio_common::envconfig::load_client_config_profile;

/// The namespace when neither the profile nor `TEMPORAL_NAMESPACE` names one.
const DEFAULT_NAMESPACE: &str = "default";

/// How to reach Temporal: what [`connection_settings_from_env`] (or
/// [`connection_settings_from`]) read, before anything is connected.
///
/// `Debug` never prints the API key or the client key.
#[derive(Clone)]
pub struct ConnectionSettings {
    /// The SDK's connection options: address, API key, TLS, gRPC headers.
    pub connection: ConnectionOptions,
    /// The namespace clients and workers use.
    pub namespace: String,
}

impl ConnectionSettings {
    /// The server address, with its scheme (`https://` when TLS is on).
    pub fn address(&self) -> &str {
        self.connection.target.as_str()
    }

    /// The API key sent as a bearer token (Temporal Cloud), if any.
    pub fn api_key(&self) -> Option<&str> {
        self.connection.api_key.as_deref()
    }

    /// The TLS settings; `None` means plain text.
    pub fn tls(&self) -> Option<&TlsOptions> {
        self.connection.tls_options.as_ref()
    }

    /// The client certificate (PEM) for mTLS, if any.
    pub fn client_cert(&self) -> Option<&[u8]> {
        self.tls()?
            .client_tls_options
            .as_ref()
            .map(|c| c.client_cert.as_slice())
    }

    /// The client certificate's private key (PEM) for mTLS, if any.
    pub fn client_key(&self) -> Option<&[u8]> {
        self.tls()?
            .client_tls_options
            .as_ref()
            .map(|c| c.client_private_key.as_slice())
    }

    /// Extra gRPC headers (`TEMPORAL_GRPC_META_*`, a profile's `grpc_meta`).
    pub fn headers(&self) -> Option<&HashMap<String, String>> {
        self.connection.headers.as_ref()
    }

    /// One line for logs: address, namespace, and how the client authenticates
    /// (never the secrets themselves).
    pub fn summary(&self) -> String {
        let auth = match (self.api_key().is_some(), self.client_cert().is_some()) {
            (true, true) => "API key and mTLS client certificate",
            (true, false) => "API key",
            (false, true) => "mTLS client certificate",
            (false, false) => "no credentials",
        };
        let tls = if self.tls().is_some() {
            "TLS"
        } else {
            "plain text"
        };
        format!(
            "{} namespace `{}` ({tls}, {auth})",
            self.address(),
            self.namespace
        )
    }
}

impl fmt::Debug for ConnectionSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tls = self.tls().map(|t| {
            format!(
                "server CA: {}, server name: {:?}, client certificate: {}",
                if t.server_root_ca_cert.is_some() {
                    "given"
                } else {
                    "system roots"
                },
                t.domain,
                if t.client_tls_options.is_some() {
                    "given"
                } else {
                    "none"
                }
            )
        });
        f.debug_struct("ConnectionSettings")
            .field("address", &self.address())
            .field("namespace", &self.namespace)
            .field("api_key", &self.api_key().map(|_| "<redacted>"))
            .field("tls", &tls)
            .field(
                "headers",
                &self.headers().map(|h| h.keys().collect::<Vec<_>>()),
            )
            .finish()
    }
}

/// Reads the connection settings from the process environment and the
/// `temporal.toml` it names (`TEMPORAL_CONFIG_FILE`, else
/// `~/.config/temporalio/temporal.toml`; `TEMPORAL_PROFILE` picks the
/// profile), as the Temporal SDK does, without connecting. Certificate and
/// key files are read now, so a missing one is reported here by name.
pub fn connection_settings_from_env() -> Result<ConnectionSettings, ApprovalsError> {
    load(None)
}

/// Like [`connection_settings_from_env`], with `env` in place of the process
/// environment (the `temporal.toml` is still read from the file it names).
pub fn connection_settings_from(
    env: &HashMap<String, String>,
) -> Result<ConnectionSettings, ApprovalsError> {
    load(Some(env))
}

/// Connects to Temporal with `settings`.
pub async fn connect_with(settings: ConnectionSettings) -> Result<Client, ApprovalsError> {
    let target = settings.address().to_string();
    let client_options = ClientOptions::new(settings.namespace).build();
    let connection = Connection::connect(settings.connection)
        .await
        .map_err(|e| {
            ApprovalsError::Connection(format!("cannot reach Temporal at {target}: {e}"))
        })?;
    Client::new(connection, client_options)
        .map_err(|e| ApprovalsError::Connection(format!("Temporal client: {e}")))
}

fn settings_error(message: String) -> ApprovalsError {
    ApprovalsError::Connection(format!("Temporal connection settings: {message}"))
}

fn load(env: Option<&HashMap<String, String>>) -> Result<ConnectionSettings, ApprovalsError> {
    let var = |name: &str| -> Option<String> {
        match env {
            Some(map) => map.get(name).cloned(),
            None => std::env::var(name).ok(),
        }
        .filter(|v| !v.is_empty())
    };
    let config_file = var("TEMPORAL_CONFIG_FILE");
    // The SDK treats a named file that does not exist as an empty one; a
    // typo in the name would silently drop every setting of the profile.
    if let Some(path) = &config_file
        && !std::path::Path::new(path).exists()
    {
        return Err(settings_error(format!(
            "TEMPORAL_CONFIG_FILE names `{path}`, which does not exist"
        )));
    }
    let file = || match &config_file {
        Some(path) => format!("`{path}` (TEMPORAL_CONFIG_FILE)"),
        None => "~/.config/temporalio/temporal.toml".to_string(),
    };
    let profile = load_client_config_profile(LoadClientConfigProfileOptions::default(), env)
        // ConfigError is not Send + Sync: keep its text only.
        .map_err(|e| {
            use temporalio_client::envconfig::ConfigError;
            settings_error(match e {
                ConfigError::ProfileNotFound(name) => {
                    format!("TEMPORAL_PROFILE `{name}` is not a profile in {}", file())
                }
                ConfigError::LoadError(e) => format!("reading {}: {e}", file()),
                other => other.to_string(),
            })
        })?;
    check_files(&profile)?;
    let namespace = profile
        .namespace
        .clone()
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    let connection =
        ConnectionOptions::try_from(profile).map_err(|e| settings_error(e.to_string()))?;
    Ok(ConnectionSettings {
        connection,
        namespace,
    })
}

/// Reports a certificate or key file that cannot be read by its role, path
/// and the settings that name it (the SDK's own error names neither).
fn check_files(profile: &ClientConfigProfile) -> Result<(), ApprovalsError> {
    let Some(tls) = &profile.tls else {
        return Ok(());
    };
    for (source, what, variable, key) in [
        (
            &tls.client_cert,
            "TLS client certificate",
            "TEMPORAL_TLS_CLIENT_CERT_PATH",
            "tls.client_cert_path",
        ),
        (
            &tls.client_key,
            "TLS client key",
            "TEMPORAL_TLS_CLIENT_KEY_PATH",
            "tls.client_key_path",
        ),
        (
            &tls.server_ca_cert,
            "TLS server CA certificate",
            "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
            "tls.server_ca_cert_path",
        ),
    ] {
        if let Some(DataSource::Path(path)) = source
            && let Err(e) = std::fs::metadata(path).and_then(|m| {
                if m.is_file() {
                    Ok(())
                } else {
                    Err(std::io::Error::other("not a file"))
                }
            })
        {
            return Err(settings_error(format!(
                "{what} `{path}` (from {variable} or the profile's {key}) cannot be read: {e}"
            )));
        }
    }
    Ok(())
}
