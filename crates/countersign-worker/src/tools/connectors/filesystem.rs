//! The `filesystem` connector: `list`, `read`, `write` and `delete` inside
//! one folder (`root`).
//!
//! Every path is confined to the root: absolute paths, `..` that climbs out
//! and symbolic links that lead outside are refused. The check resolves the
//! deepest part of the path that exists, so a file that does not exist yet
//! (a `write`) is checked through the folders it would be created in.
//!
//! `write` (replace the whole file) and `delete` are idempotent by nature:
//! repeating them after a retry leaves the same state, so they need no
//! marker of the idempotency key.

use super::{ActionSpec, optional_string, string_arg};
use crate::tools::{ToolError, ToolOutput};
use countersign_policy::EffectClass;
use countersign_policy::sources::Connector;
use serde_json::{Value, json};
use std::io::{ErrorKind, Read};
use std::path::{Component, Path, PathBuf};

/// How much of a file `read` returns.
const MAX_READ_BYTES: usize = 64 * 1024;
/// How many entries `list` returns.
const MAX_LIST_ENTRIES: usize = 1000;

pub(super) fn specs() -> Vec<ActionSpec> {
    let path = |what: &str| json!({"type": "string", "description": what});
    vec![
        ActionSpec {
            name: "list",
            description: "List the files and folders in a folder of the connector's directory.",
            effect: EffectClass::Read,
            schema: json!({
                "type": "object",
                "properties": {"path": path("folder, relative to the connector's directory (default: its top)")},
                "additionalProperties": false
            }),
        },
        ActionSpec {
            name: "read",
            description: "Read a text file (the first 64 KiB) from the connector's directory.",
            effect: EffectClass::Read,
            schema: json!({
                "type": "object",
                "properties": {"path": path("file, relative to the connector's directory")},
                "required": ["path"],
                "additionalProperties": false
            }),
        },
        ActionSpec {
            name: "write",
            description: "Create or replace a file in the connector's directory with the given text; missing folders are created.",
            effect: EffectClass::WriteOwn,
            schema: json!({
                "type": "object",
                "properties": {
                    "path": path("file, relative to the connector's directory"),
                    "content": {"type": "string", "description": "the file's whole new content"}
                },
                "required": ["path", "content"],
                "additionalProperties": false
            }),
        },
        ActionSpec {
            name: "delete",
            description: "Delete a file (or an empty folder) in the connector's directory.",
            effect: EffectClass::WriteOwn,
            schema: json!({
                "type": "object",
                "properties": {"path": path("file or empty folder, relative to the connector's directory")},
                "required": ["path"],
                "additionalProperties": false
            }),
        },
    ]
}

pub(super) async fn run(
    connector: &Connector,
    action: &str,
    args: &Value,
) -> Result<ToolOutput, ToolError> {
    let root = connector
        .root
        .clone()
        .ok_or_else(|| ToolError::Refused("this filesystem connector has no `root`".into()))?;
    let action = action.to_string();
    let args = args.clone();
    // File-system calls block; keep them off the async workers.
    tokio::task::spawn_blocking(move || run_blocking(&root, &action, &args))
        .await
        .map_err(|e| ToolError::Transient(format!("the filesystem action did not finish: {e}")))?
}

fn run_blocking(root: &Path, action: &str, args: &Value) -> Result<ToolOutput, ToolError> {
    match action {
        "list" => list(root, optional_string(args, "path")?.unwrap_or("")),
        "read" => read(root, string_arg(args, "path")?),
        "write" => write(
            root,
            string_arg(args, "path")?,
            string_arg(args, "content")?,
        ),
        "delete" => delete(root, string_arg(args, "path")?),
        other => Err(ToolError::Refused(format!(
            "`{other}` is not a filesystem action"
        ))),
    }
}

fn outside(relative: &str) -> ToolError {
    ToolError::Refused(format!("{relative}: outside the connector's root"))
}

/// An I/O error: the ones a retry cannot fix are refusals.
fn io_error(relative: &str, e: std::io::Error) -> ToolError {
    let message = format!("{relative}: {e}");
    match e.kind() {
        ErrorKind::NotFound
        | ErrorKind::PermissionDenied
        | ErrorKind::AlreadyExists
        | ErrorKind::InvalidInput
        | ErrorKind::InvalidData
        | ErrorKind::IsADirectory
        | ErrorKind::NotADirectory
        | ErrorKind::DirectoryNotEmpty
        | ErrorKind::InvalidFilename
        | ErrorKind::ReadOnlyFilesystem
        | ErrorKind::StorageFull
        | ErrorKind::FileTooLarge => ToolError::Refused(message),
        _ => ToolError::Transient(message),
    }
}

/// The root, canonical (symbolic links resolved).
fn canonical_root(root: &Path) -> Result<PathBuf, ToolError> {
    root.canonicalize().map_err(|e| {
        ToolError::Refused(format!(
            "the connector's root {} is unusable: {e}",
            root.display()
        ))
    })
}

/// The components of `relative` after `.` and `..` are applied, refusing
/// absolute paths and `..` that would climb above the root.
fn lexical_parts(relative: &str) -> Result<Vec<&std::ffi::OsStr>, ToolError> {
    let mut parts = Vec::new();
    for component in Path::new(relative).components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(outside(relative));
                }
            }
            Component::RootDir | Component::Prefix(_) => return Err(outside(relative)),
        }
    }
    Ok(parts)
}

/// Where `relative` leads, below the canonical `root`; refused when it
/// leads outside. The deepest existing ancestor is canonicalized (symbolic
/// links followed) and must lie inside the root; the parts that do not
/// exist yet are appended as they are. A symbolic link whose target does not
/// exist is refused: where it would lead cannot be checked.
fn confine(root: &Path, relative: &str) -> Result<PathBuf, ToolError> {
    let parts = lexical_parts(relative)?;
    let mut existing = parts.len();
    // `symlink_metadata` does not follow the last link, so a dangling link
    // counts as existing and fails to canonicalize below.
    while existing > 0 {
        let candidate: PathBuf = parts[..existing]
            .iter()
            .fold(root.to_path_buf(), |p, c| p.join(c));
        if std::fs::symlink_metadata(&candidate).is_ok() {
            break;
        }
        existing -= 1;
    }
    let base: PathBuf = parts[..existing]
        .iter()
        .fold(root.to_path_buf(), |p, c| p.join(c));
    let base = base.canonicalize().map_err(|e| {
        if e.kind() == ErrorKind::NotFound {
            ToolError::Refused(format!(
                "{relative}: a symbolic link whose target does not exist"
            ))
        } else {
            io_error(relative, e)
        }
    })?;
    if !base.starts_with(root) {
        return Err(outside(relative));
    }
    Ok(parts[existing..].iter().fold(base, |p, c| p.join(c)))
}

fn shown(relative: &str) -> &str {
    if relative.is_empty() { "." } else { relative }
}

fn list(root: &Path, relative: &str) -> Result<ToolOutput, ToolError> {
    let root = canonical_root(root)?;
    let folder = confine(&root, relative)?;
    let name = shown(relative);
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(&folder).map_err(|e| io_error(name, e))? {
        let entry = entry.map_err(|e| io_error(name, e))?;
        // Links are shown as links, not followed: where they lead is checked
        // when one is used.
        let meta = entry.metadata().map_err(|e| io_error(name, e))?;
        let kind = if meta.is_symlink() {
            "symlink"
        } else if meta.is_dir() {
            "folder"
        } else {
            "file"
        };
        let mut item = json!({
            "name": entry.file_name().to_string_lossy(),
            "type": kind,
        });
        if meta.is_file() {
            item["size"] = json!(meta.len());
        }
        entries.push(item);
    }
    entries.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let total = entries.len();
    entries.truncate(MAX_LIST_ENTRIES);
    let mut listing = json!({"path": name, "entries": entries});
    if total > MAX_LIST_ENTRIES {
        listing["truncated"] = json!(format!(
            "{total} entries; the first {MAX_LIST_ENTRIES} are shown"
        ));
    }
    Ok(ToolOutput::ok(listing.to_string()))
}

fn read(root: &Path, relative: &str) -> Result<ToolOutput, ToolError> {
    let root = canonical_root(root)?;
    let path = confine(&root, relative)?;
    let meta = std::fs::metadata(&path).map_err(|e| io_error(relative, e))?;
    if meta.is_dir() {
        return Err(ToolError::Refused(format!(
            "{}: a folder; use `list`",
            shown(relative)
        )));
    }
    let file = std::fs::File::open(&path).map_err(|e| io_error(relative, e))?;
    // Read one byte past the cap to know whether the file goes on.
    let mut bytes = Vec::new();
    file.take(MAX_READ_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(relative, e))?;
    let longer = bytes.len() > MAX_READ_BYTES;
    bytes.truncate(MAX_READ_BYTES);
    let mut text = match String::from_utf8(bytes) {
        Ok(text) => text,
        // A character cut by the cap is not a reason to refuse the file.
        Err(e) if longer && e.utf8_error().error_len().is_none() => {
            let valid = e.utf8_error().valid_up_to();
            let mut bytes = e.into_bytes();
            bytes.truncate(valid);
            String::from_utf8(bytes).unwrap_or_default()
        }
        Err(_) => {
            return Err(ToolError::Refused(format!(
                "{relative}: not a UTF-8 text file"
            )));
        }
    };
    if longer {
        let shown = text.len();
        text.push_str(&format!(
            "\n[truncated: the file has {} bytes; the first {shown} are shown]",
            meta.len()
        ));
    }
    Ok(ToolOutput::ok(text))
}

fn write(root: &Path, relative: &str, content: &str) -> Result<ToolOutput, ToolError> {
    let root = canonical_root(root)?;
    let path = confine(&root, relative)?;
    if path == root {
        return Err(ToolError::Refused("`path` must name a file".into()));
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_error(relative, e))?;
    }
    std::fs::write(&path, content).map_err(|e| io_error(relative, e))?;
    Ok(ToolOutput::ok(format!(
        "wrote {} bytes to {relative}",
        content.len()
    )))
}

fn delete(root: &Path, relative: &str) -> Result<ToolOutput, ToolError> {
    let root = canonical_root(root)?;
    let mut parts = lexical_parts(relative)?;
    let Some(name) = parts.pop() else {
        return Err(ToolError::Refused(
            "`path` must name a file or folder inside the root, not the root itself".into(),
        ));
    };
    // The folder holding the entry must be inside the root; the entry itself
    // is removed as it is, so a symbolic link is removed, never its target.
    let parent_relative: PathBuf = parts.iter().collect();
    let parent = confine(&root, &parent_relative.to_string_lossy())?;
    let path = parent.join(name);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(meta) => meta,
        // Already gone: a retried delete reports success.
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Ok(ToolOutput::ok(format!(
                "{relative} does not exist (nothing to delete)"
            )));
        }
        Err(e) => return Err(io_error(relative, e)),
    };
    if meta.is_dir() {
        std::fs::remove_dir(&path).map_err(|e| io_error(relative, e))?;
    } else {
        std::fs::remove_file(&path).map_err(|e| io_error(relative, e))?;
    }
    Ok(ToolOutput::ok(format!("deleted {relative}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_parts_apply_dots_and_refuse_escapes() {
        let parts = |p: &str| {
            lexical_parts(p).map(|v| {
                v.iter()
                    .map(|c| c.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(parts("a/./b/../c").unwrap(), ["a", "c"]);
        assert!(parts("").unwrap().is_empty());
        assert!(parts("a/../..").is_err());
        assert!(parts("/etc").is_err());
    }

    #[test]
    fn confine_checks_files_that_do_not_exist_yet() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        assert_eq!(
            confine(&root, "sub/new/deeper.txt").unwrap(),
            root.join("sub/new/deeper.txt")
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_dangling_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let root = root.canonicalize().unwrap();
        std::os::unix::fs::symlink(dir.path().join("not-yet"), root.join("dangling")).unwrap();
        let err = write(&root, "dangling", "x").unwrap_err();
        assert!(matches!(err, ToolError::Refused(_)), "{err}");
        assert!(!dir.path().join("not-yet").exists());
    }

    #[test]
    fn long_files_are_cut_with_a_marker() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big.txt"), "x".repeat(MAX_READ_BYTES + 10)).unwrap();
        let text = read(dir.path(), "big.txt").unwrap().content;
        assert!(
            text.ends_with(&format!(
                "\n[truncated: the file has {} bytes; the first {MAX_READ_BYTES} are shown]",
                MAX_READ_BYTES + 10
            )),
            "{}",
            &text[text.len() - 100..]
        );
    }
}
