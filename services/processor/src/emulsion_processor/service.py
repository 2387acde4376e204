"""The pull loop: fetch as many items as there are free slots (interactive work first, a
share kept for bulk), run each, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Final

from nats.aio.msg import Msg

from emulsion_contracts import natsauth, wire
from emulsion_contracts.profiles import load_profiles
from emulsion_processor.cancelled import CancelledJobs
from emulsion_processor.delivery import Delivery
from emulsion_processor.settings import ProcessorSettings
from emulsion_processor.worker import Clients, ItemWorker
from emulsion_runtime import health, messaging, storage
from emulsion_runtime.consuming import FetchPolicy, LaneChoice, PullLoop

log = logging.getLogger(__name__)

FETCH_TIMEOUT: Final = 1.0  # also the longest a SIGTERM waits for the fetch in progress
SCRATCH_PREFIX: Final = "proc-"


class Readiness:
    def __init__(self) -> None:
        self.ready = False

    def __call__(self) -> bool:
        return self.ready


def _ignore_termination() -> None:
    # A pod's SIGTERM reaches the whole process group; render workers must keep going
    # until the parent has drained, then the parent shuts them down.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def render_executor(settings: ProcessorSettings) -> Executor:
    if settings.executor == "process":
        return ProcessPoolExecutor(
            max_workers=settings.concurrency,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_ignore_termination,
        )
    return ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="render")


def claim_scratch(root: Path) -> Path:
    """This process's own scratch directory, after removing those of dead processes.

    Several processors may share one volume (the local stack runs them side by side);
    a directory is only removed when the process that owned it is gone.
    """
    root.mkdir(parents=True, exist_ok=True)
    for entry in root.glob(f"{SCRATCH_PREFIX}*"):
        pid = entry.name.removeprefix(SCRATCH_PREFIX)
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(entry, ignore_errors=True)
    mine = root / f"{SCRATCH_PREFIX}{os.getpid()}"
    shutil.rmtree(mine, ignore_errors=True)  # a reused pid's leftovers
    mine.mkdir()
    return mine


async def run(settings: ProcessorSettings) -> None:
    readiness = Readiness()
    server = health.serve(settings.http_port, ready=readiness)
    scratch = claim_scratch(settings.scratch_dir)
    cpu = render_executor(settings)
    io_threads = 4 * settings.in_flight_limit
    io = ThreadPoolExecutor(max_workers=io_threads, thread_name_prefix="io")
    tasks: set[asyncio.Task[None]] = set()
    worker: ItemWorker | None = None
    cancelled_jobs: CancelledJobs | None = None
    connection, js = await messaging.connect(settings, natsauth.PROCESSOR_IDENTITY)
    try:
        clients = Clients(
            # One connection per I/O thread, or the pool reconnects on every upload burst.
            s3=storage.s3_client(settings, max_pool_connections=io_threads),
            js=js,
            cancelled=await js.key_value(wire.CANCELLED_BUCKET),
        )
        cancelled_jobs = CancelledJobs(clients.cancelled)
        cancelled_jobs.start()
        worker = ItemWorker(
            settings,
            clients,
            load_profiles(settings.profiles_file),
            cpu,
            io,
            scratch,
            renew_cpu=lambda: render_executor(settings),
            cancelled_jobs=cancelled_jobs,
        )
        delivery = Delivery(worker)
        stopping = asyncio.Event()
        # Both lanes' durables, one loop: each free slot takes interactive work first,
        # keeping a share for bulk (emulsion_runtime.consuming.LaneChoice).
        pulling = PullLoop(
            js,
            wire.WORK_STREAM,
            wire.WORK_CONSUMERS,
            lambda message: take(delivery, message, stopping, tasks),
            room=lambda: room(tasks, settings.in_flight_limit, stopping),
            policy=FetchPolicy(timeout=FETCH_TIMEOUT),
            choice=LaneChoice(settings.bulk_share_every),
        )
        await pulling.bind()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        readiness.ready = True
        log.info(
            "processing with %d %s workers, up to %d items in hand, 1 in %d slots to bulk first",
            settings.concurrency,
            settings.executor,
            settings.in_flight_limit,
            settings.bulk_share_every,
        )
        await pulling.run(stopping)
    finally:
        readiness.ready = False
        # Also when the pull loop died: items in hand still get their result or go back
        # while the connection is open, never abandoned to the ack timeout.
        await drain(tasks, settings.drain_seconds)
        if cancelled_jobs is not None:
            await cancelled_jobs.stop()
        with contextlib.suppress(Exception):
            await connection.drain()
        (worker.cpu if worker else cpu).shutdown(wait=True, cancel_futures=True)
        io.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(scratch, ignore_errors=True)
        server.shutdown()
    log.info("stopped")


async def room(tasks: set[asyncio.Task[None]], limit: int, stopping: asyncio.Event) -> int:
    """How many items to fetch: the free slots, once there is one (or `stopping`)."""
    while len(tasks) >= limit and not stopping.is_set():
        stop_waiter = asyncio.create_task(stopping.wait())
        try:
            await asyncio.wait({*tasks, stop_waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_waiter.cancel()
    return limit - len(tasks)


async def take(
    delivery: Delivery, message: Msg, stopping: asyncio.Event, tasks: set[asyncio.Task[None]]
) -> None:
    """Start the item into `tasks`; one fetched as the stop came goes back at once."""
    if stopping.is_set():
        # Another worker takes it, at no delivery's cost.
        await delivery.hand_back(message)
        return
    tasks.add(start(delivery, message, tasks))


def start(delivery: Delivery, message: Msg, tasks: set[asyncio.Task[None]]) -> asyncio.Task[None]:
    task = asyncio.create_task(delivery.handle(message))

    def finished(done: asyncio.Task[None]) -> None:
        tasks.discard(done)
        if not done.cancelled() and done.exception() is not None:
            log.error("item task failed; it will be redelivered", exc_info=done.exception())

    task.add_done_callback(finished)
    return task


async def drain(tasks: set[asyncio.Task[None]], seconds: float) -> None:
    """Let items in hand finish for up to `seconds`; hand the rest back."""
    if not tasks:
        return
    log.info("draining %d items in hand", len(tasks))
    _, pending = await asyncio.wait(set(tasks), timeout=seconds)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
