"""One trace per ingest, across every service, as docs/architecture.md ("Telemetry") draws it.

The expected edges between services are listed once, here; the test runs an ingest and
a re-ingest (so a superseded version reaches the janitor) and checks that each edge
exists inside the re-ingest's trace, rooted at the API's request span.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import Image

from emulsion_cli.gallery import GalleryParams, ensure_gallery
from emulsion_devstack.otlp import OtlpReceiver, ReceivedSpan
from emulsion_devstack.stack import LocalStack


@dataclass(frozen=True)
class Edge:
    parent: str
    child: str
    # parent: the child's span has the parent's span as parent; link: it links to it
    # (a span that folds many messages links each one instead of having many parents).
    kind: Literal["parent", "link"]
    why: str


PHOTO_SUFFIXES = {".jpg", ".png", ".webp"}
API, CONTROLLER, PROCESSOR, JANITOR = (
    "emulsion-api",
    "emulsion-controller",
    "emulsion-processor",
    "emulsion-janitor",
)

EXPECTED_EDGES = (
    Edge(API, CONTROLLER, "parent", "request span → emulsion.dev/traceparent → dispatch"),
    Edge(CONTROLLER, PROCESSOR, "parent", "dispatch → work message headers → item"),
    Edge(PROCESSOR, CONTROLLER, "link", "item → event headers → status fold"),
    Edge(PROCESSOR, JANITOR, "parent", "commit → GC message headers → delete superseded"),
)


def edge_present(edge: Edge, spans: list[ReceivedSpan], trace_id: str) -> bool:
    in_trace = [s for s in spans if s.trace_id == trace_id]
    parents = {s.span_id for s in in_trace if s.service == edge.parent}
    if edge.kind == "parent":
        return any(s.service == edge.child and s.parent_span_id in parents for s in in_trace)
    return any(
        s.service == edge.child and any(link[1] in parents for link in s.links) for s in spans
    )


def ingest(system: LocalStack, directory: Path, collection: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "emulsion_cli",
            "ingest",
            str(directory),
            "-c",
            collection,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **system.client_environment()},
    )
    photos = [p for p in directory.iterdir() if p.suffix in PHOTO_SUFFIXES]
    assert json.loads(result.stdout)["succeeded"] == len(photos), result.stderr


def test_an_ingest_is_one_trace_from_the_api_request_to_the_janitor(
    system: LocalStack, otlp: OtlpReceiver, tmp_path: Path
) -> None:
    params = GalleryParams(count=2, seed=99, min_megapixels=0.3, max_megapixels=0.5)
    photos = ensure_gallery(params, root=tmp_path / "first")
    ingest(system, photos, "traced")
    # Re-export the same two photos with edits: a second ingest supersedes the first.
    edits = tmp_path / "edits"
    edits.mkdir()
    for photo in photos.iterdir():
        if photo.suffix in PHOTO_SUFFIXES:
            with Image.open(photo) as image:
                image.convert("RGB").rotate(180).save(edits / photo.name)
    already_seen = {s.trace_id for s in otlp.spans()}
    ingest(system, edits, "traced")

    def reingest_trace(spans: list[ReceivedSpan]) -> str | None:
        roots = [
            s
            for s in spans
            if s.service == API
            and s.name == "POST /v1/ingests"
            and not s.parent_span_id
            and s.trace_id not in already_seen
        ]
        return roots[-1].trace_id if roots else None

    def complete(spans: list[ReceivedSpan]) -> bool:
        trace_id = reingest_trace(spans)
        return trace_id is not None and all(
            edge_present(edge, spans, trace_id) for edge in EXPECTED_EDGES
        )

    try:
        spans = otlp.wait_for(complete, timeout=90)
    except AssertionError:
        spans = otlp.spans()
        trace_id = reingest_trace(spans)
        missing = [
            e for e in EXPECTED_EDGES if not trace_id or not edge_present(e, spans, trace_id)
        ]
        in_trace = sorted({(s.service, s.name) for s in spans if s.trace_id == trace_id})
        raise AssertionError(
            f"re-ingest trace {trace_id}: missing edges "
            + "; ".join(f"{e.parent} -{e.kind}-> {e.child} ({e.why})" for e in missing)
            + f"; spans in that trace: {in_trace}"
        ) from None
    trace_id = reingest_trace(spans)
    services = {s.service for s in spans if s.trace_id == trace_id}
    assert {API, CONTROLLER, PROCESSOR, JANITOR} <= services
