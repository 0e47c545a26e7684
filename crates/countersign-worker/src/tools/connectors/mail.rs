//! The `mail` connector: `send` over SMTP; `list` and `read` from a Maildir.
//!
//! SMTP does not deduplicate, so a send retried after a worker crash may
//! deliver twice. The Message-ID is derived from the idempotency key, so
//! the copies carry the same id and mail clients and filters can recognise
//! (and usually collapse) them as one message.

use super::{ActionSpec, optional_limit, string_arg};
use crate::tools::truncate_output;
use crate::tools::{ToolError, ToolOutput};
use countersign_policy::EffectClass;
use countersign_policy::sources::Connector;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use mail_parser::{Address, MessageParser};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long one SMTP exchange may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of a message's text `read` returns.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// Messages larger than this are not parsed by `read`.
const MAX_MESSAGE_BYTES: u64 = 25 * 1024 * 1024;
/// How much of each file `list` reads to find its headers.
const HEADER_BYTES: u64 = 64 * 1024;

pub(super) fn specs() -> Vec<ActionSpec> {
    let addresses = |what: &str| {
        json!({
            "type": ["string", "array"],
            "items": {"type": "string"},
            "description": what
        })
    };
    vec![
        ActionSpec {
            name: "send",
            description: "Send a plain-text email.",
            effect: EffectClass::WriteExternal,
            schema: json!({
                "type": "object",
                "properties": {
                    "to": addresses("recipient address, or a list of them"),
                    "subject": {"type": "string"},
                    "body": {"type": "string", "description": "the message text"},
                    "cc": addresses("copy recipient address, or a list of them"),
                },
                "required": ["to", "subject", "body"],
                "additionalProperties": false
            }),
        },
        ActionSpec {
            name: "list",
            description: "List the messages in the mailbox, newest first: id, from, to, subject, date.",
            effect: EffectClass::Read,
            schema: json!({
                "type": "object",
                "properties": {
                    "limit": {"type": "integer", "minimum": 1, "maximum": 200, "description": "how many (default 20)"}
                },
                "additionalProperties": false
            }),
        },
        ActionSpec {
            name: "read",
            description: "Read one message of the mailbox (headers and text) by the id `list` gave.",
            effect: EffectClass::Read,
            schema: json!({
                "type": "object",
                "properties": {"id": {"type": "string", "minLength": 1}},
                "required": ["id"],
                "additionalProperties": false
            }),
        },
    ]
}

pub(super) async fn run(
    connector: &Connector,
    action: &str,
    args: &Value,
    idempotency_key: &str,
) -> Result<ToolOutput, ToolError> {
    match action {
        "send" => send(connector, args, idempotency_key).await,
        "list" | "read" => {
            let maildir = connector
                .maildir
                .clone()
                .ok_or_else(|| ToolError::Refused("this mail connector has no `maildir`".into()))?;
            let action = action.to_string();
            let args = args.clone();
            // Maildir reads block; keep them off the async workers.
            tokio::task::spawn_blocking(move || match action.as_str() {
                "list" => list(&maildir, optional_limit(&args, "limit", 20, 200)? as usize),
                _ => read(&maildir, string_arg(&args, "id")?),
            })
            .await
            .map_err(|e| ToolError::Transient(format!("the mail action did not finish: {e}")))?
        }
        other => Err(ToolError::Refused(format!(
            "`{other}` is not a mail action"
        ))),
    }
}

/// The Message-ID of the message sent under `idempotency_key`: the same
/// for every retry of one call.
pub(super) fn message_id(idempotency_key: &str) -> String {
    let digest = hex::encode(Sha256::digest(idempotency_key.as_bytes()));
    format!("<{}@countersign.local>", &digest[..32])
}

/// `to` / `cc`: one address or a list of them.
fn addresses(args: &Value, name: &str, required: bool) -> Result<Vec<Mailbox>, ToolError> {
    let texts: Vec<&str> = match args.get(name) {
        None | Some(Value::Null) if !required => return Ok(Vec::new()),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().ok_or_else(|| {
                    ToolError::Refused(format!("argument `{name}` must hold strings"))
                })
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(ToolError::Refused(format!(
                "argument `{name}` (an address or a list of them) is required"
            )));
        }
    };
    if required && texts.is_empty() {
        return Err(ToolError::Refused(format!(
            "argument `{name}` needs at least one address"
        )));
    }
    texts
        .into_iter()
        .map(|t| {
            t.trim().parse::<Mailbox>().map_err(|e| {
                ToolError::Refused(format!(
                    "argument `{name}`: `{t}` is not an email address: {e}"
                ))
            })
        })
        .collect()
}

/// The value of the environment variable named by `field` of the connector.
fn env_value(variable: &str, field: &str) -> Result<String, ToolError> {
    crate::secrets::from_env(variable, &format!("the mail connector's `{field}`"))
        .map_err(ToolError::Refused)
}

fn credentials(connector: &Connector) -> Result<Option<Credentials>, ToolError> {
    match (&connector.username_env, &connector.password_env) {
        (None, None) => Ok(None),
        (Some(user), Some(password)) => Ok(Some(Credentials::new(
            env_value(user, "username_env")?,
            env_value(password, "password_env")?,
        ))),
        _ => Err(ToolError::Refused(
            "the mail connector needs both `username_env` and `password_env`, or neither".into(),
        )),
    }
}

/// The SMTP transport for `smtp_url`: `smtp://host[:port]` (default port
/// 587) upgrades with STARTTLS when the server offers it; `smtps://host[:port]`
/// (default 465) speaks TLS from the start.
fn transport(
    url: &str,
    credentials: Option<Credentials>,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, ToolError> {
    let bad =
        |problem: String| ToolError::Refused(format!("the mail connector's `smtp_url`: {problem}"));
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(format!("`{url}`: {e}")))?;
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad(format!("`{url}` has no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let tls_parameters =
        || TlsParameters::new(host.clone()).map_err(|e| bad(format!("TLS for `{host}`: {e}")));
    let (port, tls) = match parsed.scheme() {
        "smtps" => (465, Tls::Wrapper(tls_parameters()?)),
        // A password must not cross the network in the clear because a
        // server (or someone in the way) did not offer STARTTLS; a relay on
        // this machine is exempt.
        "smtp" if credentials.is_some() && !is_loopback(&host) => {
            (587, Tls::Required(tls_parameters()?))
        }
        "smtp" => (587, Tls::Opportunistic(tls_parameters()?)),
        other => {
            return Err(bad(format!(
                "the scheme must be `smtp` or `smtps`, not `{other}`"
            )));
        }
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(parsed.port().unwrap_or(port))
        .tls(tls)
        .timeout(Some(SMTP_TIMEOUT));
    if let Some(credentials) = credentials {
        builder = builder.credentials(credentials);
    }
    Ok(builder.build())
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

async fn send(
    connector: &Connector,
    args: &Value,
    idempotency_key: &str,
) -> Result<ToolOutput, ToolError> {
    let smtp_url = connector
        .smtp_url
        .as_deref()
        .ok_or_else(|| ToolError::Refused("this mail connector has no `smtp_url`".into()))?;
    let from = connector
        .from
        .as_deref()
        .ok_or_else(|| ToolError::Refused("this mail connector has no `from`".into()))?;
    let from: Mailbox = from.parse().map_err(|e| {
        ToolError::Refused(format!(
            "the mail connector's `from` (`{from}`) is not an email address: {e}"
        ))
    })?;
    let to = addresses(args, "to", true)?;
    let cc = addresses(args, "cc", false)?;
    let subject = string_arg(args, "subject")?;
    let body = string_arg(args, "body")?;
    let id = message_id(idempotency_key);

    let mut builder = Message::builder()
        .from(from)
        .subject(subject)
        .message_id(Some(id.clone()))
        .header(ContentType::TEXT_PLAIN);
    for mailbox in &to {
        builder = builder.to(mailbox.clone());
    }
    for mailbox in &cc {
        builder = builder.cc(mailbox.clone());
    }
    let message = builder
        .body(body.to_string())
        .map_err(|e| ToolError::Refused(format!("cannot build the message: {e}")))?;

    let transport = transport(smtp_url, credentials(connector)?)?;
    let response = transport.send(message).await.map_err(|e| {
        let text = format!("SMTP {smtp_url}: {e}");
        // 5xx replies and client-side problems (e.g. no usable AUTH
        // mechanism) will not change on a retry; 4xx replies, connection,
        // network and TLS failures may.
        if e.is_permanent() || e.is_client() {
            ToolError::Refused(text)
        } else {
            ToolError::Transient(text)
        }
    })?;
    let recipients: Vec<String> = to.iter().chain(&cc).map(|m| m.email.to_string()).collect();
    Ok(ToolOutput::ok(
        json!({
            "sent": true,
            "message_id": id,
            "recipients": recipients,
            "server": format!(
                "{} {}",
                response.code(),
                response.first_line().unwrap_or_default()
            ),
        })
        .to_string(),
    ))
}

/// A message file in the Maildir.
struct MaildirEntry {
    id: String,
    folder: &'static str,
    path: PathBuf,
}

/// The id of a Maildir file: its name without the `:2,<flags>` info part.
fn maildir_id(file_name: &str) -> &str {
    file_name
        .split_once(":2,")
        .or_else(|| file_name.split_once("!2,"))
        .map_or(file_name, |(id, _)| id)
}

fn maildir_entries(maildir: &Path) -> Result<Vec<MaildirEntry>, ToolError> {
    if !maildir.is_dir() {
        return Err(ToolError::Refused(format!(
            "the mail connector's maildir {} is not a folder",
            maildir.display()
        )));
    }
    let mut entries = Vec::new();
    for folder in ["new", "cur"] {
        let dir = maildir.join(folder);
        let listing = match std::fs::read_dir(&dir) {
            Ok(listing) => listing,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(ToolError::Transient(format!("{}: {e}", dir.display()))),
        };
        for entry in listing {
            let entry =
                entry.map_err(|e| ToolError::Transient(format!("{}: {e}", dir.display())))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Dot files are not messages (and `tmp/` is never read: deliveries
            // there are unfinished).
            if name.starts_with('.') || !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            entries.push(MaildirEntry {
                id: maildir_id(&name).to_string(),
                folder,
                path: entry.path(),
            });
        }
    }
    Ok(entries)
}

/// `Name <address>, ...`
fn show_addresses(address: Option<&Address<'_>>) -> String {
    address
        .map(|a| {
            a.iter()
                .map(|addr| match (addr.name(), addr.address()) {
                    (Some(name), Some(email)) => format!("{name} <{email}>"),
                    (None, Some(email)) => email.to_string(),
                    (Some(name), None) => name.to_string(),
                    (None, None) => String::new(),
                })
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn read_prefix(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn list(maildir: &Path, limit: usize) -> Result<ToolOutput, ToolError> {
    let parser = MessageParser::default();
    let mut messages = Vec::new();
    for entry in maildir_entries(maildir)? {
        let bytes = match read_prefix(&entry.path, HEADER_BYTES) {
            Ok(bytes) => bytes,
            // Moved or deleted by a mail client meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(ToolError::Transient(format!(
                    "{}: {e}",
                    entry.path.display()
                )));
            }
        };
        let headers = parser.parse_headers(&bytes);
        let date = headers.as_ref().and_then(|m| m.date());
        // Newest first by the Date header; the file's time when it has none.
        let time = date.map(|d| d.to_timestamp()).unwrap_or_else(|| {
            std::fs::metadata(&entry.path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs() as i64)
        });
        let item = json!({
            "id": entry.id,
            "folder": entry.folder,
            "from": show_addresses(headers.as_ref().and_then(|m| m.from())),
            "to": show_addresses(headers.as_ref().and_then(|m| m.to())),
            "subject": headers.as_ref().and_then(|m| m.subject()).unwrap_or_default(),
            "date": date.map(|d| d.to_rfc3339()),
        });
        messages.push((time, entry.id, item));
    }
    messages.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
    let total = messages.len();
    let shown: Vec<Value> = messages.into_iter().take(limit).map(|m| m.2).collect();
    Ok(ToolOutput::ok(
        json!({"total": total, "messages": shown}).to_string(),
    ))
}

/// Refuses ids that could name anything but a file of `new/` or `cur/`.
fn check_id(id: &str) -> Result<(), ToolError> {
    if id.is_empty() || id.starts_with('.') || id.contains(['/', '\\', '\0']) {
        return Err(ToolError::Refused(format!(
            "`{id}` is not a message id (ids come from `list`)"
        )));
    }
    Ok(())
}

fn read(maildir: &Path, id: &str) -> Result<ToolOutput, ToolError> {
    check_id(id)?;
    let entry = maildir_entries(maildir)?
        .into_iter()
        .find(|e| e.id == id)
        .ok_or_else(|| ToolError::Refused(format!("no message has the id `{id}`")))?;
    let size = std::fs::metadata(&entry.path)
        .map_err(|e| ToolError::Transient(format!("{}: {e}", entry.path.display())))?
        .len();
    if size > MAX_MESSAGE_BYTES {
        return Err(ToolError::Refused(format!(
            "message `{id}` has {size} bytes, more than this connector reads"
        )));
    }
    let bytes = std::fs::read(&entry.path)
        .map_err(|e| ToolError::Transient(format!("{}: {e}", entry.path.display())))?;
    let message = MessageParser::default()
        .parse(&bytes)
        .ok_or_else(|| ToolError::Refused(format!("message `{id}` cannot be parsed")))?;

    let mut text = String::new();
    let mut header = |name: &str, value: String| {
        if !value.is_empty() {
            text.push_str(&format!("{name}: {value}\n"));
        }
    };
    header("From", show_addresses(message.from()));
    header("To", show_addresses(message.to()));
    header("Cc", show_addresses(message.cc()));
    header("Subject", message.subject().unwrap_or_default().to_string());
    header(
        "Date",
        message.date().map(|d| d.to_rfc3339()).unwrap_or_default(),
    );
    header(
        "Message-ID",
        message
            .message_id()
            .map(|m| format!("<{m}>"))
            .unwrap_or_default(),
    );
    text.push('\n');
    // The text/plain parts, decoded; mail-parser falls back to the HTML
    // part converted to text when there is none.
    let body: Vec<String> = (0..message.text_body_count().max(1))
        .filter_map(|i| message.body_text(i).map(|b| b.into_owned()))
        .collect();
    text.push_str(&truncate_output(
        body.join("\n"),
        MAX_BODY_BYTES,
        "the message text",
    ));
    let attachments = message.attachment_count();
    if attachments > 0 {
        text.push_str(&format!("\n[{attachments} attachment(s) not shown]"));
    }
    Ok(ToolOutput::ok(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_id_follows_the_idempotency_key() {
        let id = message_id("approval-1");
        assert_eq!(id, message_id("approval-1"));
        assert_ne!(id, message_id("approval-2"));
        assert!(
            id.starts_with('<') && id.ends_with("@countersign.local>"),
            "{id}"
        );
        assert_eq!(id.len(), 1 + 32 + "@countersign.local>".len());
    }

    #[test]
    fn maildir_ids_drop_the_info_part() {
        assert_eq!(
            maildir_id("1700000000.M1P2.host:2,S"),
            "1700000000.M1P2.host"
        );
        assert_eq!(maildir_id("1700000000.M1P2.host"), "1700000000.M1P2.host");
    }

    #[test]
    fn ids_with_path_parts_are_refused() {
        for id in ["../x", "a/b", "a\\b", "..", ".", ""] {
            assert!(check_id(id).is_err(), "{id}");
        }
        assert!(check_id("1700000000.M1P2.host").is_ok());
    }

    #[test]
    fn addresses_take_one_or_many_and_refuse_junk() {
        let args = json!({"to": ["a@example.com", "Bob <b@example.com>"], "cc": "c@example.com"});
        assert_eq!(addresses(&args, "to", true).unwrap().len(), 2);
        assert_eq!(addresses(&args, "cc", false).unwrap().len(), 1);
        assert!(addresses(&json!({}), "cc", false).unwrap().is_empty());
        assert!(addresses(&json!({"to": []}), "to", true).is_err());
        assert!(addresses(&json!({"to": "not an address"}), "to", true).is_err());
    }

    #[test]
    fn only_smtp_and_smtps_urls_are_used() {
        assert!(transport("smtp://127.0.0.1:2525", None).is_ok());
        assert!(transport("smtps://mail.example.com", None).is_ok());
        assert!(matches!(
            transport("http://mail.example.com", None),
            Err(ToolError::Refused(_))
        ));
    }
}
