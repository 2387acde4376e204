"""The janitor process: the GC consumer, the periodic sweep, health and metrics.

Running, it sweeps staging/ every EMULSION_JANITOR_SWEEP_SECONDS (the routine work, which
follows the uploads) and runs the full reconciliation pass every
EMULSION_JANITOR_FULL_PASS_SECONDS, paced and resumable (its progress is kept in the
bucket under janitor/). `emulsion-janitor --sweep-once` runs one unpaced sweep of every
area, prints its summary as JSON and exits (for tests and operators); `--full-pass-once`
goes on with (or begins) the paced, resumable full pass, to its end; `--dry-run` reports
instead of deleting, in any mode, and leaves GC requests on the stream.
SIGTERM (or SIGINT) stops fetching, finishes the batch in hand and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from nats.aio.client import Client
from nats.js.kv import KeyValue

from emulsion_contracts import natsauth, wire
from emulsion_janitor import metrics
from emulsion_janitor.consumer import GcConsumer
from emulsion_janitor.deleter import Deleter
from emulsion_janitor.leases import KvLeases
from emulsion_janitor.settings import JanitorSettings, load
from emulsion_janitor.store import PassProgress, read_progress
from emulsion_janitor.sweep import Sweeper
from emulsion_runtime import health, messaging, singleton, storage, telemetry
from emulsion_runtime.blocking import run_blocking

log = logging.getLogger("emulsion.janitor")


@dataclass
class Janitor:
    connection: Client
    consumer: GcConsumer
    sweeper: Sweeper
    # The sweeper role's lease (emulsion_runtime.singleton).
    roles: KeyValue

    @classmethod
    async def connect(cls, settings: JanitorSettings, s3: Any | None = None) -> Janitor:
        connection, js = await messaging.connect(settings, natsauth.JANITOR_IDENTITY)
        s3 = s3 if s3 is not None else storage.s3_client(settings)
        leases = await KvLeases.bind(js)
        consumer = GcConsumer(js, s3, Deleter(s3, leases, settings, "gc"))
        # Operators may have lengthened the work stream's max age: tombstones outlive it.
        work = await js.stream_info(wire.WORK_STREAM)
        kept = settings.tombstones_kept(work.config.max_age)
        sweeper = Sweeper(s3, Deleter(s3, leases, settings, "sweep"), settings, kept)
        roles = await js.key_value(wire.SINGLETONS_BUCKET)
        return cls(connection, consumer, sweeper, roles)

    def ready(self, consuming: bool) -> bool:
        return self.connection.is_connected and (self.consumer.bound or not consuming)

    async def close(self) -> None:
        if not self.connection.is_closed:
            await self.connection.drain()


async def _wait(stopping: asyncio.Event, seconds: float) -> bool:
    """Wait `seconds` unless stopping first; True if stopping."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), timeout=max(seconds, 0.0))
        return True
    return stopping.is_set()


async def sweep_periodically(sweeper: Sweeper, interval: float, stopping: asyncio.Event) -> None:
    """The routine sweep of staging/, every `interval`."""
    while not await _wait(stopping, interval):
        try:
            await sweeper.routine(stopping)
        except Exception:
            # Storage or NATS trouble: nothing was deleted unchecked; try at the next turn.
            log.exception("sweep failed; trying again in %.0f s", interval)


def pass_due_in(progress: PassProgress | None, interval: float, now: datetime) -> float:
    """Seconds until the full pass should run: at once if none ever ran or one is
    unfinished (a restart goes on with it), else `interval` after the last one began."""
    if progress is None or not progress.finished:
        return 0.0
    started = progress.started_at
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    return (started + timedelta(seconds=interval) - now).total_seconds()


async def pass_periodically(
    sweeper: Sweeper, settings: JanitorSettings, stopping: asyncio.Event
) -> None:
    """The full pass, every EMULSION_JANITOR_FULL_PASS_SECONDS from the last one's start;
    an unfinished one (a restart, the deletion cap, an error) goes on after a sweep
    interval from where it stopped."""
    while not stopping.is_set():
        try:
            progress = await run_blocking(read_progress, sweeper.s3, settings.bucket)
            due = pass_due_in(progress, settings.full_pass_interval, datetime.now(UTC))
            if await _wait(stopping, due):
                return
            report = await sweeper.full_pass(stopping)
            finished = not (report.capped or report.interrupted)
        except Exception:
            log.exception("full pass failed; going on in %.0f s", settings.sweep_interval)
            finished = False
        if not finished and await _wait(stopping, settings.sweep_interval):
            return


async def serve(settings: JanitorSettings, stopping: asyncio.Event) -> int:
    # A dry run must lose nothing: GC requests stay on the stream for a janitor that deletes
    # (acknowledging them after only reporting would drop them), so it only sweeps.
    consuming = not settings.dry_run
    connected: list[Janitor] = []
    # Served before connecting: while the controller has not created the GC consumer and
    # the leases bucket yet, the janitor waits live but not ready.
    server = health.serve(
        settings.http_port,
        ready=lambda: bool(connected) and connected[0].ready(consuming) and not stopping.is_set(),
    )
    try:
        janitor = await Janitor.connect(settings)
    except BaseException:
        server.shutdown()
        raise
    connected.append(janitor)

    async def sweeps(released: asyncio.Event) -> None:
        await asyncio.gather(
            sweep_periodically(janitor.sweeper, settings.sweep_interval, released),
            pass_periodically(janitor.sweeper, settings, released),
        )

    # Every replica consumes GC requests; one at a time sweeps (see singleton.py).
    tasks = [
        asyncio.create_task(
            singleton.run_while_held(
                janitor.roles,
                wire.janitor_sweeper_role(settings.bucket),
                f"{socket.gethostname()}/{os.getpid()}",
                sweeps,
                stopping,
                renew_every=messaging.SINGLETON_TTL / 3,
                on_change=metrics.SWEEPER.set,
            ),
            name="sweeps",
        )
    ]
    if consuming:
        tasks.append(
            asyncio.create_task(janitor.consumer.run(stopping, settings.fetch_batch), name="gc")
        )
    log.info(
        "janitor running",
        extra={
            "bucket": settings.bucket,
            "dry_run": settings.dry_run,
            "consuming_gc_requests": consuming,
            "sweep_interval": settings.sweep_interval,
            "full_pass_interval": settings.full_pass_interval,
            "full_pass_keys_per_second": settings.full_pass_rate,
        },
    )
    try:
        # A task ends early only by failing; then the whole process stops.
        await asyncio.wait(
            [*tasks, asyncio.create_task(stopping.wait())], return_when=asyncio.FIRST_COMPLETED
        )
        stopping.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        server.shutdown()
        await janitor.close()
    failures = [r for r in results if isinstance(r, BaseException)]
    for failure in failures:
        log.error("janitor task failed", exc_info=failure)
    log.info("janitor stopped")
    return 1 if failures else 0


async def sweep_once(settings: JanitorSettings, stopping: asyncio.Event) -> int:
    janitor = await Janitor.connect(settings)
    try:
        report = await janitor.sweeper.sweep(stopping)
    finally:
        await janitor.close()
    print(json.dumps(report.summary()))
    return 0


async def full_pass_once(settings: JanitorSettings, stopping: asyncio.Event) -> int:
    janitor = await Janitor.connect(settings)
    try:
        report = await janitor.sweeper.full_pass(stopping)
    finally:
        await janitor.close()
    print(json.dumps(report.summary()))
    return 0


async def run(settings: JanitorSettings, once: bool, full_pass: bool = False) -> int:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    if full_pass:
        return await full_pass_once(settings, stopping)
    return await (sweep_once if once else serve)(settings, stopping)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="emulsion-janitor",
        description="Delete superseded versions, abandoned uploads and deleted assets.",
    )
    parser.add_argument(
        "--sweep-once", action="store_true", help="run one safety-net sweep, print it, exit"
    )
    parser.add_argument(
        "--full-pass-once",
        action="store_true",
        help="go on with (or begin) the paced, resumable full pass, print it, exit",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="report what would be deleted, delete nothing"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    settings = load()
    if args.dry_run:
        settings = settings.model_copy(update={"dry_run": True})
    telemetry.setup("emulsion-janitor", settings.log_level)
    try:
        code = asyncio.run(run(settings, args.sweep_once, args.full_pass_once))
    finally:
        telemetry.shutdown()
    sys.exit(code)
