//! OpenTelemetry span export, compiled only with the `otel` cargo feature
//! (`cargo build -p countersign --features otel`).
//!
//! When `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! is set, every command exports its tracing spans (the `decision`,
//! `decide` and `approval` spans with their approval, workflow and run ids,
//! among others) over OTLP/gRPC, batched, as service `countersign`. The
//! exporter's other standard variables (`OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_EXPORTER_OTLP_TIMEOUT`, …) apply. `COUNTERSIGN_OTEL_LOG` filters
//! what is exported (default `info`), apart from `COUNTERSIGN_LOG`, which
//! filters stderr. Unset, nothing is exported and nothing is started.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Filtered;
use tracing_subscriber::registry::LookupSpan;

/// Flushes and stops the exporter when dropped.
pub struct OtelGuard(SdkTracerProvider);

impl Drop for OtelGuard {
    fn drop(&mut self) {
        if let Err(e) = self.0.shutdown() {
            eprintln!("warning: OpenTelemetry export did not finish: {e}");
        }
    }
}

/// The export layer, filtered by `COUNTERSIGN_OTEL_LOG`, and its guard;
/// both `None` when no OTLP endpoint is configured.
#[allow(clippy::type_complexity)]
pub fn layer<S>() -> anyhow::Result<(
    Option<Filtered<OpenTelemetryLayer<S, SdkTracer>, EnvFilter, S>>,
    Option<OtelGuard>,
)>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let configured = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|v| !v.trim().is_empty()));
    if !configured {
        return Ok((None, None));
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("countersign").build())
        .build();
    let tracer = provider.tracer("countersign");
    let filter = EnvFilter::try_from_env("COUNTERSIGN_OTEL_LOG").unwrap_or_else(|_| "info".into());
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(filter);
    Ok((Some(layer), Some(OtelGuard(provider))))
}
