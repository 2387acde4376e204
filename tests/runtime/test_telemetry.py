"""Tracing configuration from the standard OTEL_* variables, and messaging span shapes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from emulsion_contracts import wire
from emulsion_runtime import telemetry
from emulsion_runtime.telemetry import ConfigurationError, Operation


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp, console"}, ["otlp", "console"]),
    ],
)
def test_exporters_come_from_otel_traces_exporter(
    environ: dict[str, str], expected: list[str]
) -> None:
    assert telemetry.traces_exporters(environ) == expected


def test_an_unknown_exporter_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="zipkin"):
        telemetry.traces_exporters({"OTEL_TRACES_EXPORTER": "zipkin"})


@pytest.mark.parametrize(
    ("environ", "protocol", "exporter"),
    [
        ({}, "http/protobuf", Http),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "grpc", Grpc),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "http/protobuf", Http),
        (
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
            },
            "grpc",
            Grpc,
        ),
    ],
)
def test_protocol_picks_the_exporter(
    environ: dict[str, str], protocol: str, exporter: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    assert telemetry.otlp_protocol(environ) == protocol
    built = telemetry.otlp_exporter(protocol)
    try:
        assert isinstance(built, exporter)
    finally:
        built.shutdown()


def test_an_unsupported_protocol_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="http/json"):
        telemetry.otlp_protocol({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})


@given(st.lists(st.from_regex(r"[a-z0-9_-]{1,12}", fullmatch=True), min_size=2, max_size=6))
def test_span_names_use_the_subjects_low_cardinality_stem(parts: list[str]) -> None:
    subject = ".".join(parts)
    name = telemetry.messaging_span_name(Operation.PROCESS, subject)
    assert name == f"process {parts[0]}.{parts[1]}"
    attributes = telemetry.messaging_attributes(Operation.PROCESS, subject)
    assert attributes["messaging.destination.name"] == subject
    assert attributes["messaging.system"] == "nats"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    previous = trace._TRACER_PROVIDER
    trace._TRACER_PROVIDER = provider
    try:
        yield exporter
    finally:
        trace._TRACER_PROVIDER = previous


def test_a_message_is_published_and_processed_under_messaging_conventions(
    spans: InMemorySpanExporter,
) -> None:
    subject = wire.work_subject("photos", "job-1")
    headers = telemetry.message_headers(subject, {wire.HEADER_MSG_ID: "uid/0"})
    assert "traceparent" in headers
    assert headers[wire.HEADER_MSG_ID] == "uid/0"
    with telemetry.messaging_span(Operation.PROCESS, subject, headers, {"emulsion.index": 0}):
        pass
    publish, process = spans.get_finished_spans()
    assert publish.name == "publish emulsion.work"
    assert publish.kind is trace.SpanKind.PRODUCER
    assert process.name == "process emulsion.work"
    assert process.kind is trace.SpanKind.CONSUMER
    assert process.parent is not None and process.parent.span_id == publish.context.span_id
    for span, operation in ((publish, "publish"), (process, "process")):
        assert span.attributes is not None
        assert span.attributes["messaging.system"] == "nats"
        assert span.attributes["messaging.operation.type"] == operation
        assert span.attributes["messaging.destination.name"] == subject
        assert span.attributes["messaging.message.id"] == "uid/0"
