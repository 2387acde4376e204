"""The CLI hands each upload batch to the API as soon as it is up, so processing starts
while the rest uploads; on the real API, controller and processor."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

import httpx

from emulsion_cli.api import Api
from emulsion_cli.config import Config
from emulsion_cli.gallery import GalleryParams, ensure_gallery
from emulsion_cli.ingest import Options, SilentReporter, Tally, batch_sizes, ingest

from .conftest import Services


@dataclass
class Call:
    at: float
    method: str
    path: str
    query: dict[str, list[str]]


@dataclass
class RecordingTransport(httpx.AsyncBaseTransport):
    """The real HTTP transport, noting every request as it goes out."""

    inner: httpx.AsyncHTTPTransport = field(default_factory=httpx.AsyncHTTPTransport)
    calls: list[Call] = field(default_factory=list)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        query = parse_qs(request.url.query.decode())
        self.calls.append(Call(time.monotonic(), request.method, request.url.path, query))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class PlanReporter(SilentReporter):
    def __init__(self) -> None:
        self.planned: list[int] = []
        self.done: list[int] = []

    def processing_planned(self, items: int) -> None:
        self.planned.append(items)

    def processed(self, done: int) -> None:
        self.done.append(done)


def run_ingest(services: Services, options: Options) -> tuple[Tally, list[Call], PlanReporter]:
    transport = RecordingTransport()
    reporter = PlanReporter()
    tally = Tally()

    async def go() -> None:
        async with Api(Config(services.api_url, services.token), transport) as api:
            await ingest(api, options, reporter, tally)

    asyncio.run(go())
    return tally, transport.calls, reporter


def test_each_batch_is_notified_once_uploaded_and_the_summary_aggregates_the_jobs(
    services: Services, tmp_path: Path
) -> None:
    params = GalleryParams(count=12, seed=31, min_megapixels=0.3, max_megapixels=0.6)
    photos = ensure_gallery(params, tmp_path / "gallery", workers=1)
    options = Options(
        root=photos,
        collection="cli-batches",
        concurrency=1,  # one upload at a time: the order of calls is the order of work
        state_dir=tmp_path / "state",
        first_batch=2,
        most_batch=4,
    )
    sizes = batch_sizes(12, 2, 4)

    tally, calls, reporter = run_ingest(services, options)

    notifies = [c for c in calls if c.method == "POST" and c.path == "/v1/ingests"]
    uploads = [c for c in calls if c.method == "POST" and not c.path.startswith("/v1/")]
    assert (len(notifies), len(uploads)) == (len(sizes), 12)
    # The first batch went to the API while later files were still to be uploaded.
    assert notifies[0].at < uploads[-1].at
    # Its own files were up; the next upload (one at a time) may have started beside it.
    assert sizes[0] <= sum(1 for u in uploads if u.at < notifies[0].at) <= sizes[0] + 1
    # One job per batch; the summary and the progress cover them all.
    assert (tally.items, tally.succeeded, tally.failures) == (12, 12, [])
    assert len(tally.jobs) == len(sizes) and tally.jobs == sorted(tally.jobs)
    assert reporter.planned[0] == reporter.planned[-1] == 12
    assert max(reporter.done) == 12
    # The final outcomes are read without download URLs.
    reads = [
        c
        for c in calls
        if c.method == "GET" and c.path.startswith("/v1/ingests/") and "item_limit" in c.query
    ]
    assert {tuple(c.query.get("urls", [])) for c in reads if c.query["item_limit"] != ["0"]} == {
        ("false",)
    }

    again, calls, _ = run_ingest(services, options)

    assert (again.already_ingested, again.uploaded_files, again.items) == (12, 0, 0)
    assert not [c for c in calls if c.method == "POST" and c.path == "/v1/ingests"]
