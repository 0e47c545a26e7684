//! Signing keys on disk: `countersign keys new`, the private key read by
//! `approvals approve|deny --sign-key` and `serve`'s `[signing]`. The
//! formats and the signing itself live in `countersign_proto::signing`;
//! this module only reads and writes files.

use anyhow::{Context, Result, bail};
use countersign_proto::signing::{
    SigningKey, check_key_id, parse_signing_key, signing_key_from_secret, signing_key_pem,
    verifying_key_pem,
};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Writes a new Ed25519 key pair as `DIR/ID.key` (PKCS#8 PEM, mode 0600)
/// and `DIR/ID.pub` (SPKI PEM), from 32 bytes of `/dev/urandom`. Refuses an
/// invalid id and never overwrites a file. Returns both paths.
pub fn new_key_pair(id: &str, dir: &Path) -> Result<(PathBuf, PathBuf)> {
    check_key_id(id)?;
    let private = dir.join(format!("{id}.key"));
    let public = dir.join(format!("{id}.pub"));
    for path in [&private, &public] {
        if path.exists() {
            bail!(
                "{} exists: refusing to overwrite a key (choose another --id, or remove it first)",
                path.display()
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut secret = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut secret))
        .context("reading /dev/urandom")?;
    let key = signing_key_from_secret(&secret);
    secret.fill(0);
    write_new(&private, signing_key_pem(&key)?.as_bytes(), 0o600)?;
    write_new(
        &public,
        verifying_key_pem(&key.verifying_key())?.as_bytes(),
        0o644,
    )?;
    Ok((private, public))
}

/// Creates `path` (never overwriting) with `mode` and writes `bytes`.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Reads a private key file (PKCS#8 PEM); its key id is the file's stem.
pub fn read_signing_key(path: &Path) -> Result<(String, SigningKey)> {
    let id = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    check_key_id(&id)
        .with_context(|| format!("{}: the file's stem is the key id", path.display()))?;
    let key = read_key_file(path)?;
    Ok((id, key))
}

/// Reads a private key file (PKCS#8 PEM).
pub fn read_key_file(path: &Path) -> Result<SigningKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_signing_key(&text).with_context(|| format!("{}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn new_key_pairs_are_private_readable_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = new_key_pair("serve-1", dir.path()).unwrap();
        let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (id, key) = read_signing_key(&private).unwrap();
        assert_eq!(id, "serve-1");
        let public_key = countersign_proto::signing::parse_verifying_key(
            &std::fs::read_to_string(&public).unwrap(),
        )
        .unwrap();
        assert_eq!(public_key, key.verifying_key());
        let again = new_key_pair("serve-1", dir.path()).unwrap_err().to_string();
        assert!(again.contains("refusing to overwrite"), "{again}");
        assert!(new_key_pair("../escape", dir.path()).is_err());
        assert!(new_key_pair("", dir.path()).is_err());
        // Two pairs differ.
        let (other, _) = new_key_pair("serve-2", dir.path()).unwrap();
        assert_ne!(read_key_file(&other).unwrap().to_bytes(), key.to_bytes());
    }
}
