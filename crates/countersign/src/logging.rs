//! Logs on stderr for every command: `COUNTERSIGN_LOG` is the tracing
//! filter (default `warn`), `--log-format` / `COUNTERSIGN_LOG_FORMAT` the
//! format.
//!
//! - `text`: tracing's human format (span fields shown before the message).
//! - `json`: one JSON object a line: `timestamp`, `level`, `target`,
//!   `message`, then the fields of every span the event is in (outermost
//!   first, inner spans win) and of the event itself (which win over the
//!   spans), all at the top level, and `spans`, the span names. So a line
//!   logged while deciding an approval carries `approval_id`, `workflow_id`
//!   and `run_id` as plain fields, whoever logged it.
//!
//! With the `otel` cargo feature, spans are also exported over OTLP/gRPC
//! when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (see [`crate::otel`]).

use serde_json::{Map, Value};
use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// The format of log lines on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object a line, span fields flattened in.
    Json,
}

/// What must live as long as logging does (the OpenTelemetry exporter,
/// flushed when dropped).
#[must_use = "dropping the guard stops span export"]
pub struct LoggingGuard {
    #[cfg(feature = "otel")]
    _otel: Option<crate::otel::OtelGuard>,
}

/// Installs the global subscriber: the `COUNTERSIGN_LOG` filter (default
/// `warn`), stderr in `format`, and OTLP export when built with `otel` and
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
pub fn init(format: LogFormat) -> anyhow::Result<LoggingGuard> {
    // A filter per layer: stderr's does not limit what OpenTelemetry exports.
    let filter = EnvFilter::try_from_env("COUNTERSIGN_LOG").unwrap_or_else(|_| "warn".into());
    let stderr = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .with_filter(filter)
            .boxed(),
    };
    let registry = tracing_subscriber::registry().with(stderr);
    #[cfg(feature = "otel")]
    {
        let (layer, guard) = crate::otel::layer()?;
        registry.with(layer).try_init()?;
        Ok(LoggingGuard { _otel: guard })
    }
    #[cfg(not(feature = "otel"))]
    {
        registry.try_init()?;
        Ok(LoggingGuard {})
    }
}

/// The `json` event format: every field at the top level (see the module
/// docs). Spans must be formatted with [`JsonFields`].
#[derive(Debug, Clone, Copy, Default)]
pub struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        line.insert("timestamp".into(), timestamp.into());
        let meta = event.metadata();
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        let mut spans = Vec::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                spans.push(Value::from(span.name()));
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields) {
                    line.extend(fields);
                }
            }
        }
        let mut visitor = FieldsVisitor(&mut line);
        event.record(&mut visitor);
        if !spans.is_empty() {
            line.insert("spans".into(), Value::Array(spans));
        }
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Collects an event's fields as JSON values.
struct FieldsVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for FieldsVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    /// A writer that keeps what is written.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What `log` writes through the JSON format.
    fn json_lines_of(log: impl FnOnce()) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || writer.clone())
                .fmt_fields(JsonFields::new())
                .event_format(FlatJson),
        );
        tracing::subscriber::with_default(subscriber, log);
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn json_lines_carry_span_and_event_fields_at_the_top_level() {
        let text = json_lines_of(|| {
            let outer = tracing::info_span!(
                "decision",
                approval_id = "wf-1~0a1b2c3d",
                workflow_id = "wf-1",
                run_id = tracing::field::Empty,
                channel = "api",
            );
            let _outer = outer.enter();
            outer.record("run_id", "run-9");
            let inner = tracing::info_span!("decide", kind = "approve", channel = "inner");
            let _inner = inner.enter();
            tracing::info!(accepted = true, attempts = 2u64, "decision \"answered\"");
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let line: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(line["message"], "decision \"answered\"");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["approval_id"], "wf-1~0a1b2c3d");
        assert_eq!(line["workflow_id"], "wf-1");
        assert_eq!(line["run_id"], "run-9");
        assert_eq!(line["kind"], "approve");
        // The inner span wins over the outer one.
        assert_eq!(line["channel"], "inner");
        assert_eq!(line["accepted"], true);
        assert_eq!(line["attempts"], 2);
        assert_eq!(line["spans"], serde_json::json!(["decision", "decide"]));
        assert!(line["timestamp"].as_str().unwrap().contains('T'));
        assert!(line["target"].as_str().unwrap().starts_with("countersign"));
    }

    #[test]
    fn lines_outside_spans_have_no_span_list() {
        let text = json_lines_of(|| {
            tracing::warn!(problem = "a\nb", "notification failed");
        });
        assert_eq!(text.lines().count(), 1, "{text}");
        let line: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["problem"], "a\nb");
        assert_eq!(line["level"], "WARN");
        assert!(line.get("spans").is_none());
    }
}
