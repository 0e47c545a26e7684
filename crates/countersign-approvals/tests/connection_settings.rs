//! Connection settings for Temporal Cloud and secured clusters, read as the
//! worker and the CLI read them, without any network: a `temporal.toml`
//! profile with an API key and mTLS files, environment overrides, and the
//! errors a missing certificate or a malformed file give.
//!
//! `fixtures/client.pem` and `fixtures/client.key` are a throwaway
//! self-signed certificate and its key, made with
//! `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 36500 -subj /CN=countersign-test-client`.
//! They secure nothing.

use countersign_approvals::{ApprovalsError, connection_settings_from};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// An environment with nothing but these variables (no `HOME` config file:
/// every case names its file).
fn env(vars: &[(&str, &str)]) -> HashMap<String, String> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A temporary `temporal.toml` with `text`.
fn config_file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("temporal.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path.to_string_lossy().into_owned())
}

fn secured_profiles() -> String {
    format!(
        r#"
[profile.default]
address = "localhost:7233"

[profile.cloud]
address = "countersign.a1b2c.tmprl.cloud:7233"
namespace = "countersign.a1b2c"
api_key = "test-api-key"

[profile.mtls]
address = "temporal.internal.example:7233"
namespace = "approvals"

[profile.mtls.tls]
client_cert_path = "{}"
client_key_path = "{}"
server_name = "temporal.internal.example"
"#,
        fixture("client.pem").display(),
        fixture("client.key").display()
    )
}

#[test]
fn an_api_key_profile_turns_tls_on_for_temporal_cloud() {
    let (_dir, file) = config_file(&secured_profiles());
    let settings = connection_settings_from(&env(&[
        ("TEMPORAL_CONFIG_FILE", &file),
        ("TEMPORAL_PROFILE", "cloud"),
    ]))
    .unwrap();
    assert_eq!(
        settings.address(),
        "https://countersign.a1b2c.tmprl.cloud:7233/"
    );
    assert_eq!(settings.namespace, "countersign.a1b2c");
    assert_eq!(settings.api_key(), Some("test-api-key"));
    let tls = settings.tls().expect("an API key turns TLS on");
    assert!(tls.client_tls_options.is_none());
    assert!(tls.server_root_ca_cert.is_none(), "system roots");
    // The key never shows in logs.
    let debug = format!("{settings:?}");
    assert!(!debug.contains("test-api-key"), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");
    assert_eq!(
        settings.summary(),
        "https://countersign.a1b2c.tmprl.cloud:7233/ namespace `countersign.a1b2c` (TLS, API key)"
    );
}

#[test]
fn an_mtls_profile_reads_the_client_certificate_and_key() {
    let (_dir, file) = config_file(&secured_profiles());
    let settings = connection_settings_from(&env(&[
        ("TEMPORAL_CONFIG_FILE", &file),
        ("TEMPORAL_PROFILE", "mtls"),
    ]))
    .unwrap();
    assert_eq!(
        settings.address(),
        "https://temporal.internal.example:7233/"
    );
    assert_eq!(settings.namespace, "approvals");
    assert_eq!(settings.api_key(), None);
    let tls = settings.tls().expect("a tls table turns TLS on");
    assert_eq!(tls.domain.as_deref(), Some("temporal.internal.example"));
    let cert = settings.client_cert().expect("client certificate");
    let key = settings.client_key().expect("client key");
    assert_eq!(cert, std::fs::read(fixture("client.pem")).unwrap());
    assert_eq!(key, std::fs::read(fixture("client.key")).unwrap());
    assert!(cert.starts_with(b"-----BEGIN CERTIFICATE-----"));
    assert!(key.starts_with(b"-----BEGIN PRIVATE KEY-----"));
    let debug = format!("{settings:?}");
    assert!(!debug.contains("PRIVATE KEY"), "{debug}");
}

#[test]
fn environment_variables_override_the_profile() {
    let (_dir, file) = config_file(&secured_profiles());
    let settings = connection_settings_from(&env(&[
        ("TEMPORAL_CONFIG_FILE", &file),
        ("TEMPORAL_PROFILE", "cloud"),
        ("TEMPORAL_NAMESPACE", "staging.a1b2c"),
        ("TEMPORAL_API_KEY", "rotated-key"),
        ("TEMPORAL_GRPC_META_X_TEAM", "payments"),
    ]))
    .unwrap();
    assert_eq!(settings.namespace, "staging.a1b2c");
    assert_eq!(settings.api_key(), Some("rotated-key"));
    assert_eq!(
        settings
            .headers()
            .and_then(|h| h.get("x-team"))
            .map(String::as_str),
        Some("payments")
    );
}

#[test]
fn environment_variables_alone_configure_mtls() {
    let cert = fixture("client.pem").to_string_lossy().into_owned();
    let key = fixture("client.key").to_string_lossy().into_owned();
    let (_dir, file) = config_file("");
    let settings = connection_settings_from(&env(&[
        ("TEMPORAL_CONFIG_FILE", &file),
        ("TEMPORAL_ADDRESS", "temporal.internal.example:7233"),
        ("TEMPORAL_TLS_CLIENT_CERT_PATH", &cert),
        ("TEMPORAL_TLS_CLIENT_KEY_PATH", &key),
    ]))
    .unwrap();
    assert_eq!(
        settings.address(),
        "https://temporal.internal.example:7233/"
    );
    assert_eq!(settings.namespace, "default");
    assert!(settings.client_cert().is_some() && settings.client_key().is_some());
    assert_eq!(
        settings.summary(),
        "https://temporal.internal.example:7233/ namespace `default` (TLS, mTLS client certificate)"
    );
}

#[test]
fn no_settings_mean_the_local_default() {
    let (_dir, file) = config_file("");
    let settings = connection_settings_from(&env(&[("TEMPORAL_CONFIG_FILE", &file)])).unwrap();
    assert_eq!(settings.address(), "http://localhost:7233/");
    assert_eq!(settings.namespace, "default");
    assert!(settings.tls().is_none() && settings.api_key().is_none());
}

fn error_text(result: Result<countersign_approvals::ConnectionSettings, ApprovalsError>) -> String {
    match result {
        Ok(settings) => panic!("expected an error, got {settings:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_missing_certificate_file_is_named() {
    let (dir, _) = config_file("");
    let missing = dir.path().join("certs/worker.pem");
    let (_dir, file) = config_file(&format!(
        "[profile.default]\naddress = \"temporal.internal.example:7233\"\n\n[profile.default.tls]\nclient_cert_path = \"{}\"\nclient_key_path = \"{}\"\n",
        missing.display(),
        fixture("client.key").display()
    ));
    let text = error_text(connection_settings_from(&env(&[(
        "TEMPORAL_CONFIG_FILE",
        &file,
    )])));
    assert!(text.contains("TLS client certificate"), "{text}");
    assert!(text.contains(&missing.display().to_string()), "{text}");
    assert!(text.contains("No such file"), "{text}");
}

#[test]
fn a_certificate_without_its_key_is_refused() {
    let cert = fixture("client.pem").to_string_lossy().into_owned();
    let (_dir, file) = config_file("");
    let text = error_text(connection_settings_from(&env(&[
        ("TEMPORAL_CONFIG_FILE", &file),
        ("TEMPORAL_TLS_CLIENT_CERT_PATH", &cert),
    ])));
    assert!(
        text.contains("client certificate and client key must be provided together"),
        "{text}"
    );
}

#[test]
fn a_malformed_file_is_reported_with_its_name_and_line() {
    let (_dir, file) = config_file(
        "[profile.cloud]\naddress = \"countersign.a1b2c.tmprl.cloud:7233\"\napi_key = test-api-key\n",
    );
    let text = error_text(connection_settings_from(&env(&[
        ("TEMPORAL_CONFIG_FILE", &file),
        ("TEMPORAL_PROFILE", "cloud"),
    ])));
    assert!(text.contains(&file), "{text}");
    assert!(text.contains("line 3"), "{text}");
}

#[test]
fn a_config_file_that_does_not_exist_is_an_error_not_an_empty_profile() {
    let text = error_text(connection_settings_from(&env(&[(
        "TEMPORAL_CONFIG_FILE",
        "/nonexistent/temporal.toml",
    )])));
    assert!(text.contains("/nonexistent/temporal.toml"), "{text}");
    assert!(text.contains("does not exist"), "{text}");
}

#[test]
fn an_unknown_profile_is_named() {
    let (_dir, file) = config_file(&secured_profiles());
    let text = error_text(connection_settings_from(&env(&[
        ("TEMPORAL_CONFIG_FILE", &file),
        ("TEMPORAL_PROFILE", "prod"),
    ])));
    assert!(text.contains("`prod`"), "{text}");
    assert!(text.contains(&file), "{text}");
}
