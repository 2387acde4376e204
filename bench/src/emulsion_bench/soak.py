"""`make soak`: the bench gallery while a monkey kills service processes, judged by the
fault suite's oracle.

The whole stack runs locally (all four services as processes). The gallery is staged and
announced in one request; then, until every item has an outcome, a monkey SIGKILLs a
random service every 10-20 s (the stack starts it again at once, as a kubelet would),
restarts NATS once and stops MinIO for two minutes once. At the end it prints:

    items            every item of every job
    duplicates done  items whose work (render + upload) was done more than once, counted
                     from the processor's spans (a process killed before exporting its
                     spans hides its share: a lower bound)
    lost             items with no outcome, or succeeded without their styles
    live deleted     keys deleted while a manifest referenced them (or within the grace)
    orphans          keys no live manifest references, after the grace and a sweep

Target: 0 lost, 0 live keys deleted, 0 orphans. `SOAK_ARGS="--images 200"` for a short run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from emulsion_bench.notify import stage_upload
from emulsion_cli.gallery import GalleryParams, ensure_gallery
from emulsion_devstack.otlp import OtlpReceiver, ReceivedSpan
from emulsion_devstack.services import SERVICES
from emulsion_devstack.stack import LocalStack

# The oracle is the fault suite's, so the soak and `make test` judge by the same rules.
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.faults.oracle import Case, assess
from tests.faults.workload import Client, finished_items, read_job

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
COLLECTION = "soak"
GRACE_SECONDS = 20.0


def say(line: str) -> None:
    print(line, flush=True)


class Monkey(threading.Thread):
    """Kills a random service every `low`-`high` s and has the stack start it again; once
    restarts NATS and once stops MinIO for `minio_outage` s, when `progress()` (the share
    of items finished) reaches `nats_at` and `minio_at`, so both happen mid-gallery."""

    def __init__(
        self,
        stack: LocalStack,
        rng: random.Random,
        progress: Callable[[], float],
        low: float,
        high: float,
        nats_at: float,
        minio_at: float,
        minio_outage: float,
    ) -> None:
        super().__init__(daemon=True, name="monkey")
        self.stack, self.rng, self.progress = stack, rng, progress
        self.low, self.high = low, high
        self.plan: list[tuple[float, str]] = sorted([(nats_at, "nats"), (minio_at, "minio")])
        self.minio_outage = minio_outage
        self.stopping = threading.Event()
        self.events: list[str] = []
        self.kills: Counter[str] = Counter()
        self.errors: list[str] = []

    def run(self) -> None:
        began = time.monotonic()
        next_kill = began + self.rng.uniform(self.low, self.high)
        while not self.stopping.wait(0.5):
            elapsed = time.monotonic() - began
            try:
                if self.plan and self.progress() >= self.plan[0][0]:
                    self._outage(self.plan.pop(0)[1], elapsed)
                    continue
                if time.monotonic() < next_kill:
                    continue
                next_kill = time.monotonic() + self.rng.uniform(self.low, self.high)
                name = self.rng.choice(sorted(SERVICES))
                self.stack.kill(name, signal.SIGKILL)
                self.kills[name] += 1
                self.stack.start(name)
                self._event(f"{elapsed:6.0f}s SIGKILL {name}, restarted")
            except Exception as error:  # keep the monkey going; report at the end
                self.errors.append(f"{elapsed:.0f}s: {type(error).__name__}: {error}")

    def _event(self, line: str) -> None:
        """Kept for the report, and printed now with the share done: a long soak shows
        what it is doing while it runs."""
        self.events.append(line)
        say(f"  {line}  ({self.progress():.0%} of items done)")

    def _outage(self, what: str, elapsed: float) -> None:
        if what == "nats":
            self.stack.restart("nats-server")
            self._event(f"{elapsed:6.0f}s NATS restarted")
        else:
            self.stack.stop("minio")
            self._event(f"{elapsed:6.0f}s MinIO stopped for {self.minio_outage:.0f}s")
            self.stopping.wait(self.minio_outage)
            self.stack.start("minio")
        # What a kubelet would do for anything that exited meanwhile.
        for name in SERVICES:
            if not self.stack.record(name).alive():
                self.stack.start(name)
                self._event(f"{elapsed:6.0f}s {name} had exited; restarted")

    def stop(self) -> None:
        self.stopping.set()
        self.join(300)


def stage(client: Client, sources: list[Path]) -> list[str]:
    def one(path: Path) -> str:
        return stage_upload(client.s3, client.bucket, COLLECTION, path.read_bytes(), path.name)

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, sources))


def announce(client: Client, staged: list[str], names: list[str]) -> list[str]:
    response = httpx.post(
        f"{client.api_url}/v1/ingests",
        json={
            "collection": COLLECTION,
            "items": [{"upload_key": k, "asset": n} for k, n in zip(staged, names, strict=True)],
        },
        headers={"Authorization": f"Bearer {client.token}", "Idempotency-Key": "soak"},
        timeout=120,
    )
    response.raise_for_status()
    jobs: list[str] = response.json()["jobs"]
    return jobs


def share_done(client: Client, jobs: list[str], items: int) -> float:
    try:
        return sum(finished_items(read_job(client, job)) for job in jobs) / items
    except Exception:  # the apiserver may be restarting: no progress known this time
        return 0.0


def duplicates(spans: list[ReceivedSpan]) -> int:
    """Items whose render and upload were done more than once (from the processor's spans)."""
    items = {
        span.span_id: (span.attribute("emulsion.job"), span.attribute("emulsion.index"))
        for span in spans
        if span.name == "process item"
    }
    uploads = Counter(items.get(s.parent_span_id) for s in spans if s.name == "upload")
    uploads.pop(None, None)
    return sum(1 for count in uploads.values() if count > 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make soak", description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1361, help="gallery size (default 1361)")
    parser.add_argument("--kill-every", type=float, nargs=2, default=(10.0, 20.0))
    parser.add_argument(
        "--nats-restart-at", type=float, default=0.2, help="share of items done (0.2)"
    )
    parser.add_argument("--minio-stop-at", type=float, default=0.4, help="share of items done")
    parser.add_argument("--minio-outage", type=float, default=120.0, help="seconds")
    parser.add_argument("--seed", type=int, default=1361)
    parser.add_argument("--timeout", type=float, default=3600.0, help="for all items to end")
    args = parser.parse_args(argv)

    gallery = ensure_gallery(GalleryParams(count=args.images))
    sources = sorted(p for p in gallery.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    sources = sources[: args.images]
    say(f"soak: {len(sources)} images from {gallery}")
    with (
        OtlpReceiver() as otlp,
        tempfile.TemporaryDirectory(prefix="emulsion-soak-") as state,
    ):
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp.endpoint
        os.environ["OTEL_BSP_SCHEDULE_DELAY"] = "200"
        os.environ["EMULSION_GC_GRACE_SECONDS"] = str(GRACE_SECONDS)
        os.environ["EMULSION_RETRY_DELAY_SECONDS"] = "2"
        stack = LocalStack(Path(state), services=tuple(SERVICES), say=lambda line: None)
        try:
            endpoints = stack.up()
            environment = stack.client_environment()
            client = Client.of(endpoints, environment["EMULSION_API_URL"])
            case = Case(client, environment, GRACE_SECONDS).watching(COLLECTION)
            staged = stage(client, sources)
            case.jobs += announce(client, staged, [p.name for p in sources])
            say(f"  announced {len(staged)} items in {len(case.jobs)} job(s); monkey on")
            monkey = Monkey(
                stack,
                random.Random(args.seed),  # noqa: S311 (a reproducible monkey, not a secret)
                progress=lambda: share_done(client, case.jobs, len(staged)),
                low=args.kill_every[0],
                high=args.kill_every[1],
                nats_at=args.nats_restart_at,
                minio_at=args.minio_stop_at,
                minio_outage=args.minio_outage,
            )
            monkey.start()
            try:
                findings = assess(case, args.timeout)
            finally:
                monkey.stop()
            spans = otlp.spans()
        finally:
            stack.down()
    for error in monkey.errors:
        say(f"  monkey error: {error}")
    report = {
        "items": findings.items,
        "duplicates_done": duplicates(spans),
        "lost": findings.lost,
        "failed": len(findings.failed),
        "live_keys_deleted": len(findings.live_deleted),
        "orphans": len(findings.orphans),
        "kills": dict(monkey.kills),
        "seconds": round(findings.seconds),
    }
    say(json.dumps(report))
    say(
        f"items {report['items']}  duplicates done {report['duplicates_done']}  "
        f"lost {report['lost']}  failed {report['failed']}  "
        f"live keys deleted {report['live_keys_deleted']}  orphans {report['orphans']}"
    )
    for problem in findings.problems(all_succeed=True)[:20]:
        say(f"  {problem}")
    clean = not (findings.lost or findings.live_deleted or findings.orphans or findings.failed)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
