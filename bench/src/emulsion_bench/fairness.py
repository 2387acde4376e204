"""`make bench-fairness`: a single photo beside someone else's import, and bulk tenants'
shares, on one local stack with several tenant tokens.

One stack (etcd, kube-apiserver, NATS, MinIO and the four services as processes, as
`make up` starts them), its API given one token per tenant (each token is a tenant of
its own). For each lanes setting (`--lanes`: on, off, or both, on first):

1. the bulk import alone: tenant A's CLI ingests `--bulk-images` generated photos; its
   images/s between its 10th and 90th percent result;
2. the import with singles: A ingests the same photos again (a new collection);
   `--singles-after` seconds after A's CLI started, tenant B notifies one photo (staged
   beforehand), then again every `--interval` seconds, `--singles` times in all, on a
   fixed schedule whatever the answers (open loop). Each single's time runs from its
   `POST /v1/ingests` to its job read back Succeeded (a long poll on the API, as a
   client follows it); A's images/s is measured as in 1;
3. shares: `--share-tenants` tenants' CLIs each ingest `--share-images` photos at once;
   each tenant's share of the results per `--bucket` seconds, after the first `--skip`
   seconds and while every tenant still had work waiting.

Results are timed as the processors publish them (the bench listens on the results
subject as the stack's admin), so rates and shares do not depend on how often statuses
are written. The controller's queue gauges (`emulsion_queue_depth`,
`emulsion_queue_oldest_age_seconds`) are read from its /metrics every 2 s, and each
phase reports their peaks per lane when the controller exports them.

Lanes off runs the controller with EMULSION_INTERACTIVE_MAX_ITEMS=0 (every job bulk)
and EMULSION_FEED_HIGH_WATER huge (every item published at once: the stream's first-in,
first-out order, as before the lanes). Prints the figures and the targets met or
missed; writes bench/results/<date>-fairness.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from emulsion_bench import fairness_figures as figures
from emulsion_bench import inputs, machine, notify
from emulsion_bench.cli import ingest_command
from emulsion_cli.gallery import GalleryParams, ensure_gallery
from emulsion_contracts import wire
from emulsion_contracts.messages import ItemResult
from emulsion_devstack.endpoints import Endpoints
from emulsion_devstack.services import SERVICES
from emulsion_devstack.stack import LocalStack, s3_client

RESULTS_DIR = Path(__file__).resolve().parents[2] / "results"
# The controller's settings that turn the lanes and the fair-share feeder off: every job
# is bulk, and every item is published at dispatch (first in, first out).
LANES_OFF: dict[str, str] = {
    "EMULSION_INTERACTIVE_MAX_ITEMS": "0",
    "EMULSION_FEED_HIGH_WATER": "1000000000",
}
LANES_ON: dict[str, str] = {}
# How long one long poll of a single's job may wait (the API caps it too).
FOLLOW_SECONDS = 30.0


def say(line: str) -> None:
    print(line, flush=True)


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make bench-fairness", description=__doc__.split("\n")[0])
    parser.add_argument("--bulk-images", type=int, default=5000, help="tenant A's import")
    parser.add_argument("--singles", type=int, default=20, help="tenant B's single photos")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between singles")
    parser.add_argument(
        "--singles-after", type=float, default=10.0, help="first single, s after A began"
    )
    parser.add_argument("--share-tenants", type=int, default=3, help="bulk tenants at once")
    parser.add_argument(
        "--share-images", type=int, default=None, help="each's photos (default: --bulk-images)"
    )
    parser.add_argument("--bucket", type=float, default=10.0, help="share bucket, seconds")
    parser.add_argument("--skip", type=float, default=60.0, help="shares: first s not counted")
    parser.add_argument(
        "--megapixels", default="0.5,2", help="generated photos' size range, MIN,MAX"
    )
    parser.add_argument("--lanes", choices=("both", "on", "off"), default="both")
    parser.add_argument("--concurrency", type=int, default=8, help="each CLI's uploads")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if args.share_images is None:
        args.share_images = args.bulk_images
    low, _, high = args.megapixels.partition(",")
    args.megapixel_range = (float(low), float(high or low))
    return args


# -- the results, as the processors publish them ----------------------------------------


@dataclass
class ResultClock:
    """Every item result seen on the results subject: when (monotonic) and whose."""

    seen: set[tuple[str, int]] = field(default_factory=set)
    by_collection: dict[str, list[float]] = field(default_factory=dict)

    def record(self, data: bytes, moment: float) -> None:
        try:
            result = ItemResult.model_validate_json(data)
        except ValueError:
            return  # another event on the subject
        key = (result.job.uid, result.index)
        if result.collection is None or key in self.seen:
            return
        self.seen.add(key)
        self.by_collection.setdefault(result.collection, []).append(moment)

    def count(self, collection: str) -> int:
        return len(self.by_collection.get(collection, ()))

    def times(self, collection: str, since: float = 0.0) -> list[float]:
        return [moment - since for moment in self.by_collection.get(collection, ())]


@contextlib.asynccontextmanager
async def listening(endpoints: Endpoints, clock: ResultClock) -> AsyncIterator[ResultClock]:
    connection = await endpoints.nats_connect()

    async def handler(message: Any) -> None:
        clock.record(message.data, time.monotonic())

    try:
        await connection.subscribe(wire.EVENTS_SUBJECTS, cb=handler, pending_msgs_limit=1_000_000)
        yield clock
    finally:
        await connection.drain()


# -- the stack, with a token per tenant ---------------------------------------------------


@dataclass
class Tenants:
    tokens: dict[str, str]

    @classmethod
    def new(cls, names: Sequence[str]) -> Tenants:
        return cls({name: secrets.token_urlsafe(32) for name in names})


def start_services(stack: LocalStack, tenants: Tenants, lanes: Mapping[str, str]) -> str:
    """The four services as `make up` starts them, the API with every tenant's token and
    the controller with `lanes`; the API's URL."""
    api_url = ""
    for name in SERVICES:
        environment: dict[str, str] = {}
        if name == "controller":
            environment = dict(lanes)
        if name == "api":
            environment = {"EMULSION_API_TOKENS": ",".join(tenants.tokens.values())}
        record = stack.start_service(name, environment)
        if name == "api":
            api_url = LocalStack.service_url(record)
    return api_url


def restart_controller(stack: LocalStack, lanes: Mapping[str, str]) -> None:
    stack.stop("controller")
    stack.start_service("controller", dict(lanes))


# -- one lanes setting ----------------------------------------------------------------------


@dataclass
class Run:
    stack: LocalStack
    endpoints: Endpoints
    api_url: str
    tenants: Tenants
    # The bulk import's photos (tenant A's), and the shares' (each bulk tenant's).
    gallery: Path
    share_gallery: Path
    single: Path
    clock: ResultClock
    args: argparse.Namespace
    logs: Path
    stamp: str = field(default_factory=lambda: f"{int(time.time()) % 1_000_000:06d}")
    # (monotonic time, per lane depth and oldest age) from the controller's /metrics.
    queue: list[tuple[float, dict[str, dict[str, float]]]] = field(default_factory=list)

    async def sample_queue(self, every: float = 2.0) -> None:
        """Read the controller's queue gauges until cancelled (nothing while it exports
        none, or while it restarts)."""
        async with httpx.AsyncClient(timeout=5.0) as http:
            while True:
                with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                    port = self.stack.record("controller").env["EMULSION_METRICS_PORT"]
                    page = await http.get(f"http://127.0.0.1:{port}/metrics")
                    lanes = figures.queue_sample(page.text)
                    if lanes:
                        self.queue.append((time.monotonic(), lanes))
                await asyncio.sleep(every)

    def queue_peaks(self, began: float) -> dict[str, dict[str, float]]:
        return figures.queue_peaks(self.queue, began, time.monotonic())

    def client_environment(self, tenant: str) -> dict[str, str]:
        return {
            **os.environ,
            **self.stack.client_environment(),
            "EMULSION_API_URL": self.api_url,
            "EMULSION_TOKEN": self.tenants.tokens[tenant],
        }

    async def start_cli(
        self, tenant: str, collection: str, gallery: Path | None = None
    ) -> asyncio.subprocess.Process:
        log = (self.logs / f"fairness-{collection}.log").open("wb")
        try:
            return await asyncio.create_subprocess_exec(
                *ingest_command(
                    gallery or self.gallery,
                    collection,
                    "--concurrency",
                    str(self.args.concurrency),
                ),
                env=self.client_environment(tenant),
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        finally:
            log.close()

    async def bulk(self, collection: str, began: float, process: Any) -> dict[str, Any]:
        code = await process.wait()
        times = self.clock.times(collection, began)
        if code != 0:
            say(f"  !! the CLI of {collection} exited {code} (log: fairness-{collection}.log)")
        return {
            "collection": collection,
            "cli_exit": code,
            "results": len(times),
            "seconds": max(times, default=0.0),
            "images_per_second": figures.steady_rate(times),
        }

    async def alone(self, mode: str) -> dict[str, Any]:
        collection = f"a-alone-{mode}-{self.stamp}"
        began = time.monotonic()
        process = await self.start_cli("a", collection)
        return await self.bulk(collection, began, process)

    async def with_singles(self, mode: str) -> dict[str, Any]:
        collection = f"a-busy-{mode}-{self.stamp}"
        singles_collection = f"b-{mode}-{self.stamp}"
        s3 = s3_client(self.endpoints)
        body = self.single.read_bytes()
        keys = [
            await asyncio.to_thread(
                notify.stage_upload,
                s3,
                self.endpoints.bucket,
                singles_collection,
                body,
                self.single.name,
            )
            for _ in range(self.args.singles)
        ]
        began = time.monotonic()
        process = await self.start_cli("a", collection)
        async with httpx.AsyncClient(
            base_url=self.api_url,
            headers={"Authorization": f"Bearer {self.tenants.tokens['b']}"},
            timeout=FOLLOW_SECONDS + 30,
        ) as http:
            singles = await asyncio.gather(
                *(
                    self.one_single(http, singles_collection, number, key, began, collection)
                    for number, key in enumerate(keys)
                )
            )
        figures_ = await self.bulk(collection, began, process)
        latencies = [row["seconds"] for row in singles if row["phase"] == "Succeeded"]
        summary = figures.latency_summary(latencies)
        figures_["singles"] = {
            "rows": singles,
            "summary": asdict(summary) if summary else None,
            "not_succeeded": [row for row in singles if row["phase"] != "Succeeded"],
            "bulk_backlog_at_notify": [row["bulk_waiting"] for row in singles],
        }
        return figures_

    async def one_single(
        self,
        http: httpx.AsyncClient,
        collection: str,
        number: int,
        key: str,
        began: float,
        bulk_collection: str,
    ) -> dict[str, Any]:
        due = began + self.args.singles_after + number * self.args.interval
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        waiting = self.args.bulk_images - self.clock.count(bulk_collection)
        sent = time.monotonic()
        row: dict[str, Any] = {
            "number": number,
            "at": round(sent - began, 3),
            "bulk_waiting": waiting,
            "phase": "not answered",
            "seconds": None,
        }
        try:
            return await self.follow_single(http, collection, number, key, sent, row)
        except httpx.HTTPError as error:
            row["phase"] = f"{type(error).__name__}: {error}"
            return row

    async def follow_single(
        self,
        http: httpx.AsyncClient,
        collection: str,
        number: int,
        key: str,
        sent: float,
        row: dict[str, Any],
    ) -> dict[str, Any]:
        response = await http.post(
            "/v1/ingests",
            json={
                "collection": collection,
                "items": [{"upload_key": key, "asset": f"single-{number:03d}.jpg"}],
            },
        )
        row["phase"] = f"HTTP {response.status_code}"
        if response.status_code != 202:
            return row
        (job,) = response.json()["jobs"]
        name = job if isinstance(job, str) else job["name"]
        while time.monotonic() - sent < 600:
            polled = await http.get(
                f"/v1/ingests/{name}",
                params={"wait": FOLLOW_SECONDS, "item_limit": 0, "urls": "false"},
            )
            if polled.status_code != 200:
                row["phase"] = f"HTTP {polled.status_code}"
                await asyncio.sleep(0.2)  # a refusal (watches): ask again shortly
                continue
            status = polled.json()
            if status["finished"]:
                row["seconds"] = round(time.monotonic() - sent, 4)
                row["phase"] = status["phase"]
                return row
        row["phase"] = "unfinished after 600 s"
        return row

    async def shares(self, mode: str) -> dict[str, Any]:
        names = [f"c{n}" for n in range(1, self.args.share_tenants + 1)]
        collections = {name: f"{name}-{mode}-{self.stamp}" for name in names}
        began = time.monotonic()
        processes = [
            await self.start_cli(name, collections[name], self.share_gallery) for name in names
        ]
        bulk = await asyncio.gather(
            *(
                self.bulk(collections[name], began, process)
                for name, process in zip(names, processes, strict=True)
            )
        )
        results = [
            (moment, name)
            for name in names
            for moment in self.clock.times(collections[name], began)
        ]
        found = figures.shares(results, names, self.args.bucket, self.args.skip)
        return {**figures.share_figures(found), "tenants_runs": dict(zip(names, bulk, strict=True))}


async def run_mode(run: Run, mode: str) -> dict[str, Any]:
    found: dict[str, Any] = {"load_average_at_start": machine.load_average()}
    say(f"[lanes {mode}] 1. tenant A's import alone ({run.args.bulk_images} photos) …")
    began = time.monotonic()
    found["alone"] = await run.alone(mode)
    found["alone"]["queue_peaks"] = run.queue_peaks(began)
    say(
        f"  {found['alone']['results']} results, {found['alone']['images_per_second']:.1f} "
        f"images/s (10-90 %), {found['alone']['seconds']:.0f} s"
    )
    say(
        f"[lanes {mode}] 2. A's import again, B's {run.args.singles} single(s) every "
        f"{run.args.interval:g} s from {run.args.singles_after:g} s …"
    )
    began = time.monotonic()
    found["with_singles"] = await run.with_singles(mode)
    found["with_singles"]["queue_peaks"] = run.queue_peaks(began)
    beside = found["with_singles"]
    summary = beside["singles"]["summary"]
    say(f"  A: {beside['results']} results, {beside['images_per_second']:.1f} images/s (10-90 %)")
    if summary:
        say(
            f"  B: notify -> Succeeded p50 {summary['p50_seconds']:.2f} s, p95 "
            f"{summary['p95_seconds']:.2f} s, max {summary['max_seconds']:.2f} s; A's backlog "
            f"at each notify {beside['singles']['bulk_backlog_at_notify']}"
        )
    for phase in ("alone", "with_singles"):
        if found[phase]["queue_peaks"]:
            say(f"  queue gauges' peak in {phase}: {found[phase]['queue_peaks']}")
    for row in beside["singles"]["not_succeeded"]:
        say(f"  !! single {row['number']}: {row['phase']}")
    say(
        f"[lanes {mode}] 3. {run.args.share_tenants} bulk tenants at once, "
        f"{run.args.share_images} photos each …"
    )
    began = time.monotonic()
    found["shares"] = await run.shares(mode)
    found["shares"]["queue_peaks"] = run.queue_peaks(began)
    deviation = found["shares"]["max_deviation"]
    say(
        f"  max deviation from an equal share: "
        f"{'n/a' if deviation is None else f'{deviation:.1%}'} over "
        f"{len(found['shares']['buckets'])} bucket(s) of {run.args.bucket:g} s"
    )
    return found


@dataclass(frozen=True)
class Setup:
    """The stack started for the run, its tenants and the lanes settings in order."""

    endpoints: Endpoints
    api_url: str
    tenants: Tenants
    modes: list[str]


SETTINGS = {"on": LANES_ON, "off": LANES_OFF}


def set_up(args: argparse.Namespace, stack: LocalStack) -> Setup:
    """The stack, its services started with the first lanes setting (outside the event
    loop: the stack's bootstrap runs one of its own)."""
    endpoints = stack.up()
    tenants = Tenants.new(["a", "b", *(f"c{n}" for n in range(1, args.share_tenants + 1))])
    modes = {"both": ["on", "off"], "on": ["on"], "off": ["off"]}[args.lanes]
    api_url = start_services(stack, tenants, SETTINGS[modes[0]])
    return Setup(endpoints, api_url, tenants, modes)


async def run_all(
    args: argparse.Namespace,
    stack: LocalStack,
    setup: Setup,
    galleries: tuple[Path, Path],
    single: Path,
) -> dict[str, Any]:
    clock = ResultClock()
    logs = Path(setup.endpoints.data_dir) / "logs"
    found: dict[str, Any] = {}
    async with listening(setup.endpoints, clock):
        run = Run(
            stack,
            setup.endpoints,
            setup.api_url,
            setup.tenants,
            *galleries,
            single,
            clock,
            args,
            logs,
        )
        sampler = asyncio.create_task(run.sample_queue())
        try:
            for number, mode in enumerate(setup.modes):
                if number:
                    await asyncio.to_thread(restart_controller, stack, SETTINGS[mode])
                found[mode] = await run_mode(run, mode)
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
    return found


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    low, high = args.megapixel_range
    galleries = []
    for count in (args.bulk_images, args.share_images):
        say(f"gallery: {count} photos of {low:g}-{high:g} MP (generated once, then cached) …")
        galleries.append(
            ensure_gallery(GalleryParams(count=count, min_megapixels=low, max_megapixels=high))
        )
    sources = inputs.images_in(galleries[0])
    single = next((p for p in sources if p.suffix.lower() in (".jpg", ".jpeg")), sources[0])
    described = machine.describe()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": described,
        "machine_headline": machine.headline(described),
        "arguments": {
            "bulk_images": args.bulk_images,
            "singles": args.singles,
            "interval": args.interval,
            "singles_after": args.singles_after,
            "share_tenants": args.share_tenants,
            "share_images": args.share_images,
            "bucket": args.bucket,
            "skip": args.skip,
            "megapixels": f"{low:g}-{high:g}",
            "lanes": args.lanes,
            "single_photo_bytes": single.stat().st_size,
        },
        "lanes_off_settings": LANES_OFF,
    }
    say(f"machine: {results['machine_headline']}")
    with tempfile.TemporaryDirectory(prefix="emulsion-bench-fairness-") as state:
        stack = LocalStack(Path(state), services=(), say=lambda line: None)
        try:
            setup = set_up(args, stack)
            results["modes"] = asyncio.run(
                run_all(args, stack, setup, (galleries[0], galleries[1]), single)
            )
        except BaseException:
            for record in stack.processes():
                if record.name in ("controller", "api"):
                    say(f"--- {record.name} log (tail)")
                    say(Path(record.log).read_text(errors="replace")[-4000:])
            raise
        finally:
            stack.down()
    targets = figures.evaluate(results["modes"]["on"]) if "on" in results["modes"] else []
    results["targets"] = [asdict(target) for target in targets]
    text = figures.markdown(results)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{datetime.now(UTC):%Y-%m-%d}-fairness"
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(text)
    say("")
    say(text)
    say(f"wrote {args.out / stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
