"""Tracing and logging bootstrap shared by every service.

Configuration comes only from the standard `OTEL_*` variables: `OTEL_TRACES_EXPORTER`
(`otlp`, the default when an OTLP endpoint is set; `console`; `none`),
`OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` / `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf`,
the default, or `grpc`), the endpoint variables the exporters read themselves, and
`OTEL_SDK_DISABLED=true` to turn tracing off. Trace context crosses NATS as W3C
`traceparent`/`tracestate` headers through `inject` and `extract`.

Message spans follow OpenTelemetry's messaging conventions: `messaging.system=nats`,
`messaging.operation.type` (publish, receive, process, settle), the subject as
`messaging.destination.name`, and span names "<operation> <destination>" where the
destination is the subject's low-cardinality stem ("publish emulsion.work",
"process emulsion.work", "process emulsion.gc").
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)

_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


def setup(service_name: str, log_level: str = "INFO") -> None:
    """Install the tracer provider and JSON logging; call once at process start."""
    configure_logging(log_level)
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    for name in traces_exporters(os.environ):
        if name == "console":
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
        else:
            provider.add_span_processor(
                BatchSpanProcessor(otlp_exporter(otlp_protocol(os.environ)))
            )
    trace.set_tracer_provider(provider)


class ConfigurationError(ValueError):
    """An OTEL_* variable names an exporter or protocol this build does not have."""


def traces_exporters(environ: Mapping[str, str]) -> list[str]:
    """The exporters OTEL_TRACES_EXPORTER names (comma-separated; `none` for none).

    Unset, it is `otlp` as the specification says, but only when an OTLP endpoint is
    configured: a local process without a collector would otherwise retry a default
    localhost:4318 for ever.
    """
    configured = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not configured:
        endpoint = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        )
        return ["otlp"] if endpoint else []
    names = [n.strip() for n in configured.split(",") if n.strip()]
    if names == ["none"]:
        return []
    unknown = sorted(set(names) - {"otlp", "console"})
    if unknown:
        raise ConfigurationError(f"OTEL_TRACES_EXPORTER: unsupported {', '.join(unknown)}")
    return names


def otlp_protocol(environ: Mapping[str, str]) -> str:
    """OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf."""
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol not in ("grpc", "http/protobuf"):
        raise ConfigurationError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not supported (grpc, http/protobuf)"
        )
    return protocol


def otlp_exporter(protocol: str) -> SpanExporter:
    """The OTLP span exporter of `protocol`; it reads its endpoint and headers itself."""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    return HttpExporter()


# -- messaging spans (OpenTelemetry semantic conventions for messaging) --------------------

MESSAGING_SYSTEM = "nats"


class Operation(StrEnum):
    PUBLISH = "publish"
    RECEIVE = "receive"
    PROCESS = "process"
    SETTLE = "settle"


_SPAN_KIND = {
    Operation.PUBLISH: trace.SpanKind.PRODUCER,
    Operation.RECEIVE: trace.SpanKind.CONSUMER,
    Operation.PROCESS: trace.SpanKind.CONSUMER,
    Operation.SETTLE: trace.SpanKind.CLIENT,
}


def destination(subject: str) -> str:
    """The subject's low-cardinality stem: "emulsion.work.ns.job" -> "emulsion.work"."""
    return ".".join(subject.split(".")[:2])


def messaging_span_name(operation: Operation, subject: str) -> str:
    return f"{operation.value} {destination(subject)}"


def messaging_attributes(
    operation: Operation, subject: str, message_id: str | None = None
) -> dict[str, str]:
    attributes = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": operation.value,
        "messaging.operation.name": operation.value,
        "messaging.destination.name": subject,
        "messaging.destination.template": f"{destination(subject)}.*",
    }
    if message_id is not None:
        attributes["messaging.message.id"] = message_id
    return attributes


def message_headers(subject: str, headers: dict[str, str]) -> dict[str, str]:
    """`headers` plus the trace context of a "publish <destination>" producer span.

    The span marks the message's creation (messages are often published in batches, so
    it is ended at once); consumers parent their "process" span on it.
    """
    tracer = trace.get_tracer("emulsion.messaging")
    operation = Operation.PUBLISH
    with tracer.start_as_current_span(
        messaging_span_name(operation, subject),
        kind=_SPAN_KIND[operation],
        attributes=messaging_attributes(operation, subject, headers.get("Nats-Msg-Id")),
    ):
        return inject(headers)


@contextmanager
def messaging_span(
    operation: Operation,
    subject: str,
    headers: Mapping[str, str] | None = None,
    attributes: Mapping[str, str | int] | None = None,
) -> Iterator[trace.Span]:
    """A receive/process/settle span of a message, parented on its producer's context."""
    tracer = trace.get_tracer("emulsion.messaging")
    message_id = (headers or {}).get("Nats-Msg-Id")
    with tracer.start_as_current_span(
        messaging_span_name(operation, subject),
        context=extract(headers) if headers is not None else None,
        kind=_SPAN_KIND[operation],
        attributes={**messaging_attributes(operation, subject, message_id), **(attributes or {})},
    ) as span:
        yield span


def shutdown() -> None:
    """Flush spans still buffered; call before the process exits."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()


def inject(headers: dict[str, str] | None = None, context: Context | None = None) -> dict[str, str]:
    """Headers carrying the current (or given) trace context, for a message or an annotation."""
    carrier = dict(headers or {})
    propagate.inject(carrier, context=context)
    return carrier


def extract(headers: Mapping[str, str] | None) -> Context:
    """The trace context a producer put into `headers` (an empty context if none)."""
    return propagate.extract(dict(headers or {}))


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the active trace and span ids for correlation."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
            entry["span_id"] = format(span.span_id, "016x")
        entry.update({k: v for k, v in record.__dict__.items() if k not in _RESERVED})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
