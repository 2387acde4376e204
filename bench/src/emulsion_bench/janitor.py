"""`make bench-janitor`: the janitor's hourly cost at 20,000 and 200,000 stored photos, and
its full pass, side by side, on a local stack of its own.

For each size, a bucket of stored photos (an original and a manifest each) plus the
uploads of the last upload TTL in staging/ (the same in both: they follow the upload
rate, not the photos stored). Then one hour of routine work at the same write rate in
both: `--writes-per-hour` re-ingests (a new version and its manifest written as the
processor writes them), whose GC requests the fast path carries out, and the hourly sweep
of staging/. Reported per hour of that work: the janitor's CPU seconds (its process's,
in this process) and its S3 requests by operation. Separately, the full reconciliation
pass, unpaced, for at most `--pass-seconds` of each size: keys/s, and its duration at the
default pace (EMULSION_JANITOR_FULL_PASS_KEYS_PER_SECOND) over every stored key.

    uv run python -m emulsion_bench.janitor [--photos 20000,200000] [--writes-per-hour 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats

from emulsion_bench.janitor_bulk import Photos, populate_photos, supersede
from emulsion_contracts.messages import GcRequest
from emulsion_devstack.stack import Endpoints, LocalStack, s3_client
from emulsion_janitor.consumer import GcConsumer
from emulsion_janitor.deleter import Deleter
from emulsion_janitor.leases import KvLeases
from emulsion_janitor.settings import JanitorSettings
from emulsion_janitor.sweep import Pace, Sweeper

RESULTS = Path(__file__).resolve().parents[2] / "results"
# Before the daily full pass, the hourly sweep listed every key at this rate (measured).
BEFORE_KEYS_PER_SECOND = 398.0


class Requests:
    """The S3 requests one client makes, by operation (counted as botocore sends them)."""

    def __init__(self, s3: Any) -> None:
        self.by_operation: Counter[str] = Counter()
        s3.meta.events.register("before-call.s3", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.by_operation[model.name] += 1

    def total(self) -> int:
        return sum(self.by_operation.values())


def settings_for(stack: Endpoints, bucket: str) -> JanitorSettings:
    return JanitorSettings(
        nats_url=stack.nats_url,
        bucket=bucket,
        s3_endpoint_url=stack.s3_endpoint_url,
        gc_grace_seconds=0.0,
    )


async def routine_hour(
    stack: Endpoints, photos: Photos, writes: list[tuple[str, str, str]]
) -> dict[str, Any]:
    """One hour's routine work: the GC requests of the hour's writes, then the sweep of
    staging/; CPU seconds and S3 requests of the janitor's client."""
    s3 = s3_client(stack)
    requests = Requests(s3)
    settings = settings_for(stack, photos.bucket)
    connection = await nats.connect(stack.nats_url)
    try:
        leases = await KvLeases.bind(connection.jetstream())
        consumer = GcConsumer(connection.jetstream(), s3, Deleter(s3, leases, settings, "gc"))
        sweeper = Sweeper(s3, Deleter(s3, leases, settings, "sweep"), settings)
        cpu, wall = time.process_time(), time.perf_counter()
        deleted = 0
        for asset, old_key, _ in writes:
            request = GcRequest(
                reason="superseded",
                keys=(old_key,),
                not_before=datetime.now(UTC),
                collection=photos.collection,
                asset=asset,
            )
            # One key per request: no progress to report on a message (`msg` unused).
            report = await consumer.carry_out(request, None)  # type: ignore[arg-type]
            deleted += report.deleted
        swept = await sweeper.routine()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await connection.drain()
    return {
        "cpu_seconds": round(cpu, 2),
        "wall_seconds": round(wall, 2),
        "s3_requests": requests.total(),
        "s3_requests_by_operation": dict(sorted(requests.by_operation.items())),
        "gc_deleted": deleted,
        "staging_listed": swept.scanned,
    }


async def full_pass(stack: Endpoints, photos: Photos, seconds: float) -> dict[str, Any]:
    """The full pass unpaced for at most `seconds`: keys listed per second."""
    s3 = s3_client(stack)
    requests = Requests(s3)
    settings = settings_for(stack, photos.bucket)
    connection = await nats.connect(stack.nats_url)
    stopping = asyncio.Event()
    try:
        leases = await KvLeases.bind(connection.jetstream())
        sweeper = Sweeper(s3, Deleter(s3, leases, settings, "sweep"), settings)
        asyncio.get_running_loop().call_later(seconds, stopping.set)
        cpu, wall = time.process_time(), time.perf_counter()
        report = await sweeper.full_pass(stopping, Pace(1e9))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await connection.drain()
    listed = report.scanned + report.manifests_scanned
    rate = listed / wall
    paced = settings.full_pass_rate
    return {
        "listed": listed,
        "finished": not report.interrupted,
        "seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 2),
        "keys_per_second": round(rate),
        "s3_requests_per_1000_keys": round(1000 * requests.total() / max(listed, 1), 1),
        "stored_keys": photos.keys,
        "duration_unpaced_seconds": round(photos.keys / rate),
        "default_pace_keys_per_second": paced,
        "duration_at_default_pace_seconds": round(photos.keys / min(rate, paced)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--photos", default="20000,200000", help="stored photos, comma-separated")
    parser.add_argument("--writes-per-hour", type=int, default=500, help="re-ingests per hour")
    parser.add_argument(
        "--uploads", type=int, default=12_000, help="uploads in staging/ (the last TTL's)"
    )
    parser.add_argument("--pass-seconds", type=float, default=60.0, help="full pass measured for")
    parser.add_argument("--label", default="", help="added to the results' file name")
    args = parser.parse_args()
    sizes = [int(size) for size in args.photos.split(",")]

    results: dict[str, Any] = {
        "bench": "janitor",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "writes_per_hour": args.writes_per_hour,
        "staging_uploads": args.uploads,
        "sizes": {},
    }
    with tempfile.TemporaryDirectory(prefix="janitor-bench-") as state:
        local = LocalStack(Path(state), say=lambda line: None)
        stack = local.up()
        try:
            for size in sizes:
                began = time.perf_counter()
                photos = populate_photos(
                    stack, f"bench-{uuid.uuid4().hex[:12]}", size, args.uploads
                )
                filled = time.perf_counter() - began
                writes = supersede(s3_client(stack), photos, 0, args.writes_per_hour)
                hour = asyncio.run(routine_hour(stack, photos, writes))
                passed = asyncio.run(full_pass(stack, photos, args.pass_seconds))
                results["sizes"][str(size)] = {
                    "stored_keys": photos.keys,
                    "populate_seconds": round(filled, 1),
                    "hour": hour,
                    "full_pass": passed,
                    "before_sweep_seconds_per_hour": round(photos.keys / BEFORE_KEYS_PER_SECOND),
                }
                print(f"{size} photos: {photos.keys} keys written in {filled:.0f} s", flush=True)
            # Written before the stack goes: removing half a million objects takes minutes.
            write(results, args.label)
        finally:
            local.down()


def write(results: dict[str, Any], label: str) -> None:
    print(markdown(results), flush=True)
    RESULTS.mkdir(exist_ok=True)
    stem = f"{datetime.now(UTC):%Y-%m-%d}-janitor{'-' + label if label else ''}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(markdown(results))
    print(f"wrote {RESULTS / stem}.json and .md", flush=True)


def markdown(results: dict[str, Any]) -> str:
    sizes = results["sizes"]
    head = "| | " + " | ".join(f"{int(size):,} photos" for size in sizes) + " |"
    rule = "|---|" + "---|" * len(sizes)

    def row(label: str, pick: Any) -> str:
        return f"| {label} | " + " | ".join(str(pick(figures)) for figures in sizes.values()) + " |"

    lines = [
        f"# make bench-janitor, {results['date']}",
        "",
        f"Routine work per hour: {results['writes_per_hour']} re-ingests (their GC requests)"
        f" and the sweep of staging/ ({results['staging_uploads']:,} uploads), the same at"
        " every size.",
        "",
        head,
        rule,
        row("stored keys", lambda f: f"{f['stored_keys']:,}"),
        row("janitor CPU s per hour", lambda f: f["hour"]["cpu_seconds"]),
        row("S3 requests per hour", lambda f: f"{f['hour']['s3_requests']:,}"),
        row(
            "  by operation",
            lambda f: ", ".join(
                f"{op} {n:,}" for op, n in f["hour"]["s3_requests_by_operation"].items()
            ),
        ),
        row("wall s per hour's work", lambda f: f["hour"]["wall_seconds"]),
        row(
            "before: hourly sweep s (398 keys/s)",
            lambda f: f"{f['before_sweep_seconds_per_hour']:,}",
        ),
        "",
        "Full pass (daily, paced), measured unpaced:",
        "",
        head,
        rule,
        row("keys listed (measured)", lambda f: f"{f['full_pass']['listed']:,}"),
        row("keys/s", lambda f: f"{f['full_pass']['keys_per_second']:,}"),
        row("S3 requests per 1,000 keys", lambda f: f["full_pass"]["s3_requests_per_1000_keys"]),
        row(
            "duration unpaced (s, projected)",
            lambda f: f"{f['full_pass']['duration_unpaced_seconds']:,}",
        ),
        row(
            "duration at the default pace (s)",
            lambda f: f"{f['full_pass']['duration_at_default_pace_seconds']:,}",
        ),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
