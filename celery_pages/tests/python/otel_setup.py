"""OpenTelemetry in a test's Python peer, as its documentation sets it up:
a tracer provider, Celery instrumented, and every span written when it ends
as one JSON line to CELERY_OTEL_FILE (its trace, its id, its parent's id,
its name and its attributes), in the shape `celery_pages --trace FILE`
writes."""
import json
import os

from opentelemetry import trace
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult


class JsonLines(SpanExporter):
    def __init__(self, path):
        self.path = path

    def export(self, spans):
        with open(self.path, "a") as out:
            for span in spans:
                out.write(json.dumps({
                    "name": span.name,
                    "trace_id": format(span.context.trace_id, "032x"),
                    "span_id": format(span.context.span_id, "016x"),
                    "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
                    "attributes": {key: str(value) for key, value in span.attributes.items()},
                }) + "\n")
        return SpanExportResult.SUCCESS

    def shutdown(self):
        pass


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(JsonLines(os.environ["CELERY_OTEL_FILE"])))
trace.set_tracer_provider(provider)
CeleryInstrumentor().instrument()
