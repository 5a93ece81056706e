//! Exporting the spans the worker and the caller make, with the
//! OpenTelemetry crates.
//!
//! Propagation ([`crate::message::trace`]) works with or without this: the
//! worker always writes the span ids it runs tasks under. Exporting records
//! those spans too, so a trace viewer shows the Rust hops between the
//! Python ones. It is off unless asked for:
//!
//! - `OTEL_EXPORTER_OTLP_ENDPOINT` set (the standard variable; OTLP over
//!   HTTP/protobuf, `http://localhost:4318` by default), or `--trace otlp`;
//! - `--trace FILE`: one JSON object per span, a line each, for a classroom
//!   without a collector.
//!
//! The spans keep the ids propagation chose (an id generator hands the SDK
//! the id the message already names), so the exported parent of a Python
//! hop's span is the exported Rust span.

use std::borrow::Cow;
use std::cell::Cell;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, SdkTracer, SdkTracerProvider, SpanData, SpanExporter,
};
use serde_json::json;

use crate::message::trace::TraceContext;

/// The environment variable that turns OTLP export on.
pub const OTLP_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// The tracer spans are made with, once exporting has started: with export
/// off a task costs one load of it. (After [`Exporting::shutdown`] its spans
/// record nothing.)
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Where spans go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// An OpenTelemetry collector, over OTLP/HTTP (the `OTEL_EXPORTER_OTLP_*`
    /// variables configure it).
    Otlp,
    /// JSON lines appended to this file.
    File(PathBuf),
}

impl Destination {
    /// `--trace VALUE` (`otlp`, or a file), else OTLP if
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` is set, else nowhere.
    pub fn from_flag(flag: Option<&str>) -> Option<Self> {
        match flag {
            Some("otlp") => Some(Destination::Otlp),
            Some(path) => Some(Destination::File(path.into())),
            None => std::env::var_os(OTLP_ENDPOINT_ENV).map(|_| Destination::Otlp),
        }
    }
}

/// Exporting, while it lives: [`Exporting::shutdown`] flushes what is left.
#[derive(Debug)]
pub struct Exporting {
    provider: SdkTracerProvider,
}

/// Starts exporting spans to `destination`.
pub fn start(destination: &Destination) -> anyhow::Result<Exporting> {
    let builder = SdkTracerProvider::builder().with_id_generator(PresetIds::default());
    let provider = match destination {
        Destination::Otlp => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .build()?;
            builder.with_batch_exporter(exporter).build()
        }
        Destination::File(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|err| {
                    anyhow::anyhow!("cannot open the trace file {}: {err}", path.display())
                })?;
            builder
                .with_simple_exporter(JsonLines(Mutex::new(file)))
                .build()
        }
    };
    // Global too, so that a user's task code can make spans of its own.
    opentelemetry::global::set_tracer_provider(provider.clone());
    if TRACER.set(provider.tracer("celery_pages")).is_err() {
        anyhow::bail!("span export was already started in this process");
    }
    Ok(Exporting { provider })
}

impl Exporting {
    /// Stops exporting and flushes the spans not yet sent.
    pub fn shutdown(self) {
        if let Err(err) = self.provider.shutdown() {
            tracing::warn!(%err, "spans not all exported");
        }
    }
}

/// A span being recorded; it ends when dropped.
pub struct Span(Option<opentelemetry_sdk::trace::Span>);

/// Records the span `context` (its parent being `context.parent_span_id`,
/// in the same trace), named `name`, about task `task_id`: a no-op unless
/// exporting.
pub fn span(name: &str, kind: SpanKind, context: &TraceContext, task_id: &str, task: &str) -> Span {
    let Some(tracer) = TRACER.get() else {
        return Span(None);
    };
    let flags = TraceFlags::new(context.flags);
    let parent = match context.parent_span_id {
        Some(parent) => Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(context.trace_id),
            SpanId::from(parent),
            flags,
            true,
            TraceState::default(),
        )),
        None => Context::new(),
    };
    PRESET.with(|preset| {
        preset.set(Some((context.trace_id, context.span_id)));
    });
    let span = tracer
        .span_builder(Cow::Owned(name.to_owned()))
        .with_kind(kind)
        .with_attributes([
            KeyValue::new("messaging.message.id", task_id.to_owned()),
            KeyValue::new("celery.task_name", task.to_owned()),
        ])
        .start_with_context(tracer, &parent);
    PRESET.with(|preset| preset.set(None));
    Span(Some(span))
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some(mut span) = self.0.take() {
            opentelemetry::trace::Span::end(&mut span);
        }
    }
}

thread_local! {
    /// The ids the next span started on this thread takes.
    static PRESET: Cell<Option<(u128, u64)>> = const { Cell::new(None) };
}

/// The SDK's id generator, handing out the ids propagation already chose
/// for the span being started ([`span`]), random ones otherwise.
#[derive(Debug, Default)]
struct PresetIds(RandomIdGenerator);

impl IdGenerator for PresetIds {
    fn new_trace_id(&self) -> TraceId {
        match PRESET.with(Cell::get) {
            Some((trace_id, _)) => TraceId::from(trace_id),
            None => self.0.new_trace_id(),
        }
    }

    fn new_span_id(&self) -> SpanId {
        match PRESET.with(Cell::get) {
            Some((_, span_id)) => SpanId::from(span_id),
            None => self.0.new_span_id(),
        }
    }
}

/// Spans as JSON lines: trace and span ids in hex, the parent's, the name,
/// the kind, start and end (Unix nanoseconds) and the attributes.
#[derive(Debug)]
struct JsonLines(Mutex<std::fs::File>);

impl SpanExporter for JsonLines {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut lines = Vec::new();
        for span in batch {
            let nanos = |time: std::time::SystemTime| {
                time.duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| since.as_nanos())
            };
            let attributes: serde_json::Map<String, serde_json::Value> = span
                .attributes
                .iter()
                .map(|kv| (kv.key.to_string(), json!(kv.value.to_string())))
                .collect();
            let parent =
                (span.parent_span_id != SpanId::INVALID).then(|| span.parent_span_id.to_string());
            let line = json!({
                "name": span.name,
                "kind": format!("{:?}", span.span_kind),
                "trace_id": span.span_context.trace_id().to_string(),
                "span_id": span.span_context.span_id().to_string(),
                "parent_id": parent,
                "start_unix_nano": nanos(span.start_time).to_string(),
                "end_unix_nano": nanos(span.end_time).to_string(),
                "attributes": attributes,
            });
            lines.extend(line.to_string().into_bytes());
            lines.push(b'\n');
        }
        let mut file = self
            .0
            .lock()
            .map_err(|_| OTelSdkError::InternalFailure("poisoned".into()))?;
        file.write_all(&lines)
            .map_err(|err| OTelSdkError::InternalFailure(err.to_string()))
    }
}
