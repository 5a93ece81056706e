//! W3C trace context on task messages, so that one trace runs through
//! Python and Rust hops of a workflow.
//!
//! OpenTelemetry's Celery instrumentation writes `traceparent` (and
//! `tracestate`, `baggage` when set) into a task message's headers; some
//! callers (Sentry's, dd-trace) also write them into a nested `headers`
//! table. The worker reads them ([`TraceContext::from_headers`]), runs the
//! task in a span of its own that is a child of the caller's
//! ([`TraceContext::child`]), and writes that span's `traceparent` on every
//! message it publishes for the task: chain steps, callbacks, errbacks,
//! retries, the messages of `chunks` and `map`. The Rust caller writes one
//! too: a child of the trace it runs in ([`current`]: a task calling
//! others, or the `TRACEPARENT` environment variable), else a new trace.
//!
//! ```
//! use celery_pages::message::trace::TraceContext;
//!
//! let caller = TraceContext::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
//! let task = caller.child();
//! assert_eq!(task.trace_id, caller.trace_id);
//! assert_ne!(task.span_id, caller.span_id);
//! assert!(task.traceparent().starts_with("00-0af7651916cd43dd8448eb211c80319c-"));
//! ```

use std::collections::BTreeMap;
use std::future::Future;

use lapin::types::{AMQPValue, FieldTable, ShortString};

/// The environment variable a Rust caller continues a trace from (as
/// `otel-cli` and CI systems pass one to a child process).
pub const TRACEPARENT_ENV: &str = "TRACEPARENT";

/// One span's context: its trace, its own id, the sampling flags, and what
/// rides along (`tracestate`, `baggage`) as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: u128,
    pub span_id: u64,
    /// The span this one is a child of, when it was made here.
    pub parent_span_id: Option<u64>,
    pub flags: u8,
    pub tracestate: Option<String>,
    pub baggage: Option<String>,
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// The span the code running now belongs to: a task's, while the worker
/// runs it.
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Runs `work` within `context` (as it is, without one).
pub async fn scope<F: Future>(context: Option<TraceContext>, work: F) -> F::Output {
    match context {
        Some(context) => CURRENT.scope(context, work).await,
        None => work.await,
    }
}

impl TraceContext {
    /// A new trace, sampled.
    pub fn root() -> Self {
        TraceContext {
            trace_id: random_u128(),
            span_id: random_span_id(),
            parent_span_id: None,
            flags: 1,
            tracestate: None,
            baggage: None,
        }
    }

    /// A span of the same trace whose parent is this one.
    pub fn child(&self) -> Self {
        TraceContext {
            span_id: random_span_id(),
            parent_span_id: Some(self.span_id),
            ..self.clone()
        }
    }

    /// What a new message is published under: a child of the span running
    /// now, of the trace in [`TRACEPARENT_ENV`], or a new trace.
    pub fn for_publish() -> Self {
        if let Some(running) = current() {
            return running.child();
        }
        std::env::var(TRACEPARENT_ENV)
            .ok()
            .and_then(|text| Self::parse(&text))
            .map_or_else(Self::root, |outer| outer.child())
    }

    /// Reads a `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`); `None` for
    /// anything else, all-zero ids and the reserved version `ff`, as the
    /// W3C specification says to ignore them.
    pub fn parse(traceparent: &str) -> Option<Self> {
        let mut parts = traceparent.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        fn hex(text: &str, len: usize) -> Option<&str> {
            let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
            (text.len() == len && text.bytes().all(lower_hex)).then_some(text)
        }
        let version = u8::from_str_radix(hex(version, 2)?, 16).ok()?;
        // Version 00 has exactly four fields; later ones may add more.
        if version == 0xff || (version == 0 && parts.next().is_some()) {
            return None;
        }
        let trace_id = u128::from_str_radix(hex(trace, 32)?, 16).ok()?;
        let span_id = u64::from_str_radix(hex(span, 16)?, 16).ok()?;
        let flags = u8::from_str_radix(hex(flags, 2)?, 16).ok()?;
        (trace_id != 0 && span_id != 0).then_some(TraceContext {
            trace_id,
            span_id,
            parent_span_id: None,
            flags,
            tracestate: None,
            baggage: None,
        })
    }

    /// The context a task message carries: `traceparent` at the top level
    /// of its headers, else in a nested `headers` table; `tracestate` and
    /// `baggage` from the same place.
    pub fn from_headers(headers: &BTreeMap<ShortString, AMQPValue>) -> Option<Self> {
        let from = |table: &BTreeMap<ShortString, AMQPValue>| {
            let text = |key: &str| match table.get(key) {
                Some(AMQPValue::LongString(text)) => Some(text.to_string()),
                Some(AMQPValue::ShortString(text)) => Some(text.to_string()),
                _ => None,
            };
            let mut context = Self::parse(&text("traceparent")?)?;
            context.tracestate = text("tracestate");
            context.baggage = text("baggage");
            Some(context)
        };
        from(headers).or_else(|| match headers.get("headers") {
            Some(AMQPValue::FieldTable(nested)) => from(nested.inner()),
            _ => None,
        })
    }

    /// This span as a `traceparent` header.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }

    /// Writes `traceparent` (and `tracestate`, `baggage` if any) into
    /// `headers`, replacing what was there.
    pub fn write(&self, headers: &mut FieldTable) {
        let mut put = |key: &str, value: &str| {
            headers.insert(key.into(), AMQPValue::LongString(value.into()));
        };
        put("traceparent", &self.traceparent());
        if let Some(state) = &self.tracestate {
            put("tracestate", state);
        }
        if let Some(baggage) = &self.baggage {
            put("baggage", baggage);
        }
    }
}

fn random_u128() -> u128 {
    uuid::Uuid::new_v4().as_u128()
}

/// A span id: random, never zero.
fn random_span_id() -> u64 {
    (random_u128() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn a_traceparent_is_read_as_the_specification_writes_it() {
        let context = TraceContext::parse(SAMPLE).unwrap();
        assert_eq!(context.trace_id, 0x0af7651916cd43dd8448eb211c80319c);
        assert_eq!(context.span_id, 0xb7ad6b7169203331);
        assert_eq!(context.flags, 1);
        assert_eq!(context.traceparent(), SAMPLE);
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-+af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_nested_headers_table_is_read_when_the_top_level_has_none() {
        let mut nested = FieldTable::default();
        nested.insert("traceparent".into(), AMQPValue::LongString(SAMPLE.into()));
        nested.insert("baggage".into(), AMQPValue::LongString("k=v".into()));
        let mut headers = FieldTable::default();
        headers.insert("headers".into(), AMQPValue::FieldTable(nested));
        let context = TraceContext::from_headers(headers.inner()).unwrap();
        assert_eq!(context.traceparent(), SAMPLE);
        assert_eq!(context.baggage.as_deref(), Some("k=v"));
        let mut written = FieldTable::default();
        context.child().write(&mut written);
        let again = TraceContext::from_headers(written.inner()).unwrap();
        assert_eq!(again.trace_id, context.trace_id);
        assert_eq!(again.baggage.as_deref(), Some("k=v"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]

        /// No header text from a peer panics the reader, and whatever it
        /// accepts it writes back the same.
        #[test]
        fn any_traceparent_text_is_read_or_refused(text in "[0-9a-fA-F-]{0,60}|.{0,60}") {
            if let Some(context) = TraceContext::parse(&text) {
                proptest::prop_assert_eq!(TraceContext::parse(&context.traceparent()), Some(context));
            }
        }
    }
}
