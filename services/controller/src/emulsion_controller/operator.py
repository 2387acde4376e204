"""The kopf operator: handlers for IngestJobs, and the tasks that run beside them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import kopf

from emulsion_contracts import crd
from emulsion_contracts.ingestjob import IngestJob, InvalidSpec
from emulsion_contracts.messages import JobRef
from emulsion_controller import events, metrics
from emulsion_controller.apiserver import Kube
from emulsion_controller.census import Census
from emulsion_controller.consumers import consume_exhausted, consume_results
from emulsion_controller.dispatch import dispatch, work_messages
from emulsion_controller.events import EventRecorder
from emulsion_controller.feeder import Feeder
from emulsion_controller.jetstream import Bus, ItemsUnavailable
from emulsion_controller.lost_results import LostResults
from emulsion_controller.outcomes import Outcomes
from emulsion_controller.peering import PeeringWatch
from emulsion_controller.progress import JobProgress
from emulsion_controller.settings import ControllerSettings, load
from emulsion_controller.status_writer import StatusWriter
from emulsion_runtime import health, telemetry

log = logging.getLogger(__name__)

DISPATCH_RETRY_SECONDS = 3.0
# How long kopf keeps an object's idle worker (and its worker_limit slot); see configure.
IDLE_WORKER_SECONDS = 0.5
# How long one answer about the apiserver's reachability serves readiness probes.
APISERVER_CHECK_SECONDS = 2.0
# Quick at first as kopf's default, then every 10 s (a returning apiserver is found soon),
# ten minutes in all.
KOPF_ERROR_BACKOFFS = (1, 1, 2, 3, 5, 8, *(10,) * 58)


def _identity() -> str:
    """This controller's name among its peers: the pod, else the host, process and a nonce.

    A pod's identity is stable across restarts of its container on purpose: a controller
    killed and restarted in place finds its own peering record and carries on at once,
    instead of pausing until the dead process's record expires as a conflicting peer.
    """
    pod = os.environ.get("POD_ID")
    return pod or f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}"


@dataclass
class Runtime:
    """What the handlers share; built at startup, kept in kopf's memo."""

    config: ControllerSettings
    census: Census = field(default_factory=Census)
    bus: Bus | None = None
    kube: Kube | None = None
    recorder: EventRecorder | None = None
    writer: StatusWriter | None = None
    feeder: Feeder | None = None
    peering: PeeringWatch | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    identity: str = field(default_factory=_identity)
    # kopf stops when this is set; main() then exits non-zero if `failure` says why.
    # An asyncio.Event, not a threading one: kopf would wait for that in an executor
    # thread that nothing ever ends, and the interpreter would hang at exit.
    stop_flag: asyncio.Event = field(default_factory=asyncio.Event)
    failure: str | None = None
    _apiserver: tuple[float, bool] = (-APISERVER_CHECK_SECONDS, False)

    # Jobs whose cancel annotation has been marked in the cancelled bucket (in memory:
    # after a restart the first event of each such job marks it again, a no-op).
    cancels_marked: set[str] = field(default_factory=set)

    def parts(self) -> tuple[Bus, Kube, StatusWriter]:
        if self.bus is None or self.kube is None or self.writer is None:
            raise kopf.TemporaryError("the controller is still starting", delay=1)
        return self.bus, self.kube, self.writer

    def fed(self) -> Feeder:
        if self.feeder is None:
            raise kopf.TemporaryError("the controller is still starting", delay=1)
        return self.feeder

    def may_feed(self) -> bool:
        """Publish bulk work only while no peer of a higher priority is live: kopf pauses
        this controller's handlers then, and the other one feeds."""
        return self.peering is None or not self.peering.outranked

    def events(self) -> EventRecorder:
        if self.recorder is None:
            raise kopf.TemporaryError("the controller is still starting", delay=1)
        return self.recorder

    def start(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        self.tasks.append(asyncio.create_task(self._supervised(name, work), name=name))

    async def _supervised(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self.fail(f"background task {name} failed: {error}", name)
            log.exception("background task %s failed; stopping", name)
            return
        if not self.stopping.is_set():
            self.fail(f"background task {name} ended while the controller runs", name)
            log.error("background task %s ended; stopping", name)

    def fail(self, reason: str, task: str) -> None:
        """A loop the controller cannot work without is gone: fail liveness, then stop.

        Restarting is the cure (a new process re-creates what it needs at start-up); a
        process that kept running without the loop would stall every job in silence.
        """
        metrics.BACKGROUND_FAILURES.labels(task).inc()
        if self.failure is None:
            self.failure = reason
        self.stop_flag.set()

    def ready(self) -> bool:
        """Readiness (from the health thread): started, no failed loop, no peering
        conflict, NATS connected, the apiserver answering."""
        if self.failure is not None or self.bus is None or self.kube is None:
            return False
        if not self.bus.connection.is_connected:
            return False
        if self.peering is not None and self.peering.in_conflict:
            return False
        return self._apiserver_reachable(self.kube)

    def _apiserver_reachable(self, kube: Kube) -> bool:
        checked, answer = self._apiserver
        now = time.monotonic()
        if now - checked >= APISERVER_CHECK_SECONDS:
            answer = kube.reachable()
            self._apiserver = (now, answer)
        return answer


def configure(settings: kopf.OperatorSettings, config: ControllerSettings) -> None:
    """kopf's settings, chosen for thousands of jobs of up to 2,000 items each."""
    # Kubernetes Events are objects in etcd: one per log line would write more than the
    # jobs themselves. Of kopf's own logs about a job only warnings and errors (a handler
    # that failed) become Events; ours are posted by events.EventRecorder.
    settings.posting.enabled = True
    settings.posting.loggers = True
    settings.posting.level = logging.WARNING
    # Bounded concurrency: a burst of created jobs queues instead of opening thousands
    # of handler tasks, API requests and NATS publishes at once.
    settings.queueing.worker_limit = config.worker_limit
    # A kopf worker is per object, not per event, and it holds its worker_limit slot
    # until the object has been quiet for `idle_timeout` (default 5 s); while every
    # slot is held, the watcher stops reading events altogether. With the default, a
    # one-item job (busy for well under a second) kept its slot ~6 s, which capped the
    # controller at worker_limit / 6 s (about 10 jobs/s at 64) while it sat mostly
    # idle: a burst of 300 jobs waited up to 23 s before kopf even added its finalizer.
    # A short idle time hands the slot on as soon as the job's burst of events (create,
    # finalizer, dispatch, kopf's bookkeeping) is over. A worker that left is simply
    # started again by the object's next event: its memory (handler progress, diff
    # base) lives outside the worker, and kopf still waits out its consistency window
    # after its own patches whatever the idle time.
    settings.queueing.idle_timeout = IDLE_WORKER_SECONDS
    # Watches are restarted by us before the server or a proxy silently drops them, and
    # a stuck connection is noticed instead of leaving the controller deaf.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    # The initial list of jobs arrives in pages, bounding memory when thousands exist.
    settings.watching.chunk_size = 200
    settings.networking.connect_timeout = 10
    settings.networking.request_timeout = 60
    # kopf gives a failing request up after its backoffs (by default 54 s in all), and its
    # peering keep-alive task dies with it, never started again (see peering.py): so an
    # apiserver away for a minute, the length our fault suite stops it for, left the
    # controller unannounced to its standbys. Its own requests keep trying for ten minutes.
    settings.networking.error_backoffs = KOPF_ERROR_BACKOFFS
    # One active controller: all replicas peer cluster-wide and only the highest
    # priority acts (distinct priorities, so two replicas never pause each other).
    # Mandatory: running without peering could mean two controllers dispatching.
    settings.peering.clusterwide = True
    settings.peering.mandatory = True
    settings.peering.standalone = False
    settings.peering.name = config.peering_name
    settings.peering.priority = config.peering_priority
    settings.peering.stealth = True
    # Our own finalizer name: deleting a running job must cancel its items first.
    settings.persistence.finalizer = crd.FINALIZER
    # A job written with kubectl can carry its items inline, ~530 KB at 2,000. kopf's
    # default keeps its diff base in an annotation, and all annotations together are
    # capped at 256 KiB, so the job could not even be handled. Both the diff base and
    # the handler progress go to status.kopf instead; and since the spec is immutable (a
    # CEL rule), inline items are left out of the diff base, which keeps every kopf
    # write small (the API's jobs name theirs in spec.itemsRef, a few hundred bytes).
    # The metadata and the rest of the spec but its collection are left out too: no
    # handler reacts to a change (the spec is immutable), and kopf keeps the diff base as
    # a JSON string in the object, where the API's annotations (an idempotency key of up
    # to 255 characters, a trace state) and the item reference would be stored a second
    # time, escaped twice (a small IngestJob: the whole object within 4 KB). What is left is never
    # empty (a collection is required): kopf would read an empty base as no base at all.
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(
        name="kopf",
        ignored_fields=[
            "metadata",
            "spec.items",
            "spec.itemsRef",
            "spec.profile",
            "spec.version",
            "spec.styles",
            "spec.ttlSecondsAfterFinished",
        ],
    )
    settings.persistence.progress_storage = kopf.StatusProgressStorage(name="kopf")


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    configure(settings, runtime.config)
    runtime.kube = Kube.from_environment(runtime.config.kube_concurrency, runtime.config.kubeconfig)
    await runtime.kube.ensure_cluster_peering(runtime.config.peering_name)
    runtime.bus = await Bus.connect(runtime.config, runtime.config.signing_key())
    runtime.recorder = EventRecorder(runtime.kube.post_event, runtime.identity)
    config = runtime.config
    runtime.feeder = Feeder(
        runtime.bus,
        interactive_max_items=config.interactive_max_items,
        high_water=config.feed_high_water,
        min_window=config.feed_min_window,
        interval=config.feed_interval,
        work_messages=work_messages,
        may_feed=runtime.may_feed,
    )
    runtime.writer = StatusWriter(
        runtime.kube,
        runtime.bus,
        runtime.config.status_interval,
        runtime.config.status_retry_ceiling,
        runtime.recorder,
        results_seen=runtime.feeder.result_seen,
    )
    metrics.RESULTS_HELD.set_function(runtime.writer.held)
    runtime.peering = PeeringWatch(
        runtime.kube,
        runtime.config.peering_name,
        runtime.identity,
        runtime.config.peering_priority,
    )
    runtime.start("events", runtime.recorder.run(runtime.stopping))
    runtime.start("results", consume_results(runtime.bus, runtime.writer, runtime.stopping))
    runtime.start("exhausted", consume_exhausted(runtime.bus, runtime.writer, runtime.stopping))
    runtime.start("feeder", runtime.feeder.run(runtime.stopping, runtime.writer.progress_of))
    runtime.start("ttl", sweep_expired(runtime))
    runtime.start("lost-results", sweep_lost_results(runtime))
    runtime.start("peering", watch_peering(runtime))


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    """SIGTERM: stop pulling, let in-flight writes finish, then close the connections."""
    runtime: Runtime = memo.runtime
    runtime.stopping.set()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.gather(*runtime.tasks, return_exceptions=True), 5)
    for task in runtime.tasks:
        task.cancel()
    if runtime.writer is not None:
        await runtime.writer.close()
    if runtime.bus is not None:
        await runtime.bus.close()
    if runtime.kube is not None:
        await runtime.kube.close()
    telemetry.shutdown()
    # kopf waits on our stop flag in a task of its own, and gives tasks still pending
    # after its root tasks 5 s before cancelling them: set it, so SIGTERM ends at once.
    runtime.stop_flag.set()


@kopf.on.probe(id="nats")
async def nats_connected(memo: kopf.Memo, **_: Any) -> bool:
    runtime: Runtime = memo.runtime
    return runtime.bus is not None and runtime.bus.connection.is_connected


@kopf.on.probe(id="background")
async def background_alive(memo: kopf.Memo, **_: Any) -> str:
    """Liveness: kopf answers 200 whatever a probe returns, but a failing probe fails
    the whole endpoint (500); so a dead background loop makes liveness fail."""
    runtime: Runtime = memo.runtime
    if runtime.failure is not None:
        raise kopf.PermanentError(runtime.failure)
    return "ok"


# Dispatch is idempotent and cheap to repeat, so a failure (apiserver or NATS away) is
# retried after seconds rather than kopf's default minute.
@kopf.on.create(crd.GROUP, crd.VERSION, crd.PLURAL, backoff=DISPATCH_RETRY_SECONDS)
async def dispatch_job(
    body: kopf.Body,
    uid: str,
    namespace: str | None,
    name: str,
    memo: kopf.Memo,
    logger: Any,
    **_: Any,
) -> None:
    """Publish the job's work; kopf runs it again after a restart until it succeeds."""
    runtime: Runtime = memo.runtime
    bus, _kube, writer = runtime.parts()
    recorder = runtime.events()
    ref = JobRef(namespace=namespace or "", name=name, uid=uid)
    try:
        outcome = await dispatch(
            body, bus, writer, runtime.fed(), runtime.config.interactive_max_items
        )
    except InvalidSpec as error:
        # Its status already says Failed with the reason, and its Event too.
        recorder.dispatch_settled(uid)
        raise kopf.PermanentError(str(error)) from error
    except ItemsUnavailable as error:
        # NATS away: the item list is read again shortly, not given up on.
        recorder.dispatch_failing(ref, error, DISPATCH_RETRY_SECONDS)
        raise kopf.TemporaryError(str(error), delay=DISPATCH_RETRY_SECONDS) from error
    except Exception as error:
        recorder.dispatch_failing(ref, error, DISPATCH_RETRY_SECONDS)
        raise
    recorder.dispatch_settled(uid)
    logger.debug(outcome)


def _running(status: Any, **_: Any) -> bool:
    return (status or {}).get("phase") in (crd.Phase.QUEUED, crd.Phase.PROCESSING)


# Only running jobs: a resume handler that runs costs kopf a status patch of its own
# progress, and thousands of finished jobs need nothing.
@kopf.on.resume(crd.GROUP, crd.VERSION, crd.PLURAL, when=_running, backoff=DISPATCH_RETRY_SECONDS)
async def resume_job(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A running job seen first by this process (a restart, a standby taking over): its
    account in the feeder, and a bulk job's feeding from its recorded cursor."""
    runtime: Runtime = memo.runtime
    bus, _kube, _writer = runtime.parts()
    feeder = runtime.fed()
    parsed = IngestJob.read(body)
    progress = (await Outcomes(bus).recorded_progress(parsed))[0]
    if progress.version is None:
        return
    await feeder.take(parsed, progress.version, progress)


@kopf.on.delete(crd.GROUP, crd.VERSION, crd.PLURAL)
async def cancel_job(
    body: kopf.Body, uid: str, namespace: str | None, name: str, memo: kopf.Memo, **_: Any
) -> None:
    """A job deleted before it finished: its remaining items must not change any asset."""
    assert namespace is not None  # IngestJobs are namespaced
    runtime: Runtime = memo.runtime
    bus, _kube, writer = runtime.parts()
    recorder = runtime.events()
    recorder.dispatch_settled(uid)
    # Nothing more of it is fed (a publish under way ends first), before the purge.
    await runtime.fed().drop(uid)
    job = IngestJob.read(body)
    # Which items finished is in the outcome record, not the status: the counts say how
    # many, the phase whether it ended.
    status = job.status
    progress = writer.progress_of(uid)
    done = progress.done if progress else status.phase.finished or _rejected(job)
    finished = progress.finished if progress else (status.succeeded or 0) + (status.failed or 0)
    writer.forget(uid)
    if not done:
        purged = await bus.cancel(uid, namespace, name)
        metrics.JOBS_CANCELLED.inc()
        recorder.record(job.ref, events.cancelled(finished, job.spec.count, purged))
        log.info(
            "job cancelled",
            extra={"namespace": namespace, "job": name, "purged": purged},
        )
    try:
        loaded = await bus.with_items(job)
    except InvalidSpec:
        # Its item list is gone or wrong: it was never dispatched, nothing was leased.
        return
    except ItemsUnavailable as error:
        raise kopf.TemporaryError(str(error), delay=DISPATCH_RETRY_SECONDS) from error
    await bus.release(uid, loaded.spec.upload_ids())
    bus.forget_items(uid)


def _rejected(job: IngestJob) -> bool:
    return JobProgress.from_job(job).rejection is not None


@kopf.on.event(crd.GROUP, crd.VERSION, crd.PLURAL)
async def observe_job(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    if event["type"] == "DELETED":
        runtime.census.forget(body)
    else:
        runtime.census.observe(body)
        if runtime.writer is not None:
            runtime.writer.observe(body)
        if runtime.feeder is not None:
            runtime.feeder.observe(body)
        _honour_cancel(runtime, body)


def _honour_cancel(runtime: Runtime, body: kopf.Body) -> None:
    """A job annotated cancelled and not finished: mark it for the processors (once per
    job and process; a failed mark is retried on the job's next event)."""
    annotations = body.get("metadata", {}).get("annotations") or {}
    uid = str(body.get("metadata", {}).get("uid") or "")
    if crd.ANNOTATION_CANCELLED not in annotations or not uid or uid in runtime.cancels_marked:
        return
    if crd.Phase.parse((body.get("status") or {}).get("phase")).finished:
        return
    if runtime.bus is None:
        return
    runtime.cancels_marked.add(uid)
    bus = runtime.bus
    name = str(body.get("metadata", {}).get("name"))

    async def mark() -> None:
        try:
            await bus.mark_cancelled(uid)
        except Exception as error:
            runtime.cancels_marked.discard(uid)
            log.warning("cannot mark job %s cancelled yet: %s", name, error)
            return
        metrics.JOBS_CANCELLED.inc()
        log.info("job cancel asked for: its remaining items end as Cancelled", extra={"job": name})

    task = asyncio.create_task(mark(), name=f"cancel-{uid}")
    _CANCEL_TASKS.add(task)
    task.add_done_callback(_CANCEL_TASKS.discard)


# The mark tasks in flight (a reference each, so none is collected before it ends).
_CANCEL_TASKS: set[asyncio.Task[None]] = set()


async def sweep_lost_results(runtime: Runtime) -> None:
    """Running jobs quiet for longer than the result deadline: see lost_results.py."""
    bus, kube, writer = runtime.parts()
    config = runtime.config
    lost = LostResults(
        kube,
        bus,
        writer,
        config.result_deadline,
        config.redispatch_rounds,
        interactive_max_items=config.interactive_max_items,
        feeder=runtime.fed(),
    )
    while not runtime.stopping.is_set():
        lost.keep_only(runtime.census.running())
        for key in runtime.census.idle(config.result_deadline):
            if not lost.due(key):
                continue
            try:
                done = await lost.check(key)
            except Exception:
                log.exception("reconciling lost results failed; retried", extra={"job": key.name})
                continue
            log.debug("lost-result check: %s", done, extra={"job": key.name})
        metrics.LOST_RESULT_ROUNDS.inc()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(runtime.stopping.wait(), config.reconcile_interval)


async def watch_peering(runtime: Runtime) -> None:
    """A same-priority peer is reported (see peering.py); reading errors are retried."""
    assert runtime.peering is not None
    while not runtime.stopping.is_set():
        try:
            await runtime.peering.check()
        except Exception:
            log.warning("could not read the peering object; retried", exc_info=True)
        if runtime.peering.keepalive_lost:
            reason = (
                "kopf's peering keep-alive stopped (this controller's entry has been stale "
                f"for {runtime.peering.stale_for.total_seconds():.0f} s while the apiserver "
                "answers); a standby would resume beside it, so this process stops"
            )
            log.error(reason)
            runtime.fail(reason, "peering")
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(runtime.stopping.wait(), runtime.config.peering_check_interval)


async def sweep_expired(runtime: Runtime) -> None:
    """ttlSecondsAfterFinished: one periodic sweep over all jobs, not a timer per job."""
    _bus, kube, _writer = runtime.parts()
    while not runtime.stopping.is_set():
        for key in runtime.census.expired(datetime.now(UTC)):
            try:
                if await kube.delete_job(key.namespace, key.name, key.uid):
                    metrics.JOBS_DELETED_BY_TTL.inc()
                    log.info("deleted a finished job after its TTL", extra={"job": key.name})
            except Exception:
                log.exception("TTL deletion failed; retried next sweep", extra={"job": key.name})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(runtime.stopping.wait(), runtime.config.ttl_sweep_interval)


def main() -> None:
    config = load()
    telemetry.setup("emulsion-controller", config.log_level)
    runtime = Runtime(config)
    # kopf's liveness endpoint owns EMULSION_HTTP_PORT; /readyz and /metrics get a port
    # of their own.
    health.serve(config.metrics_port, ready=runtime.ready)
    kopf.run(
        clusterwide=not config.namespaces,
        namespaces=config.namespaces,
        liveness_endpoint=f"http://0.0.0.0:{config.http_port}/healthz",
        # kopf's Identity is a NewType of str it does not export.
        identity=cast(Any, runtime.identity),
        stop_flag=runtime.stop_flag,
        memo=kopf.Memo(runtime=runtime),
    )
    if runtime.failure is not None:
        log.critical("the controller stopped: %s", runtime.failure)
        sys.exit(1)
