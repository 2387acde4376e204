"""One work item, from message to acknowledgement.

The order is what makes redelivery safe: a manifest that already names this item's
version means an earlier delivery finished, so nothing is redone; every key an item
writes embeds its version, so a retry rewrites the same keys; the result is published
(and stored by JetStream) before the message is acknowledged.

Transient trouble (storage, NATS KV, scratch space) is waited out here, with the
message kept in hand by in-progress heartbeats, instead of being given back: every nak
counts against the consumer's `max_deliver`, a budget that exists for poison messages
(ones that crash or wedge the worker on every delivery). A stopped MinIO answers at
once, so naks on each refusal used to spend the five deliveries in 75 s and fail
every item in hand for good. So a delivery now ends in a result, a hand-back at
shutdown (republished as a fresh message, which spends nothing), or a crash, a hang or
a dead render process: exactly the deliveries `max_deliver` should count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import BrokenExecutor, Executor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import KeyDeletedError, KeyNotFoundError
from nats.js.kv import KeyValue
from opentelemetry import trace
from pydantic import ValidationError

from emulsion_contracts import keys, wire, worksigning
from emulsion_contracts.manifest import AssetManifest, Original
from emulsion_contracts.messages import (
    Derivative,
    FocalPoint,
    GcReason,
    GcRequest,
    ItemResult,
    JobRef,
    Rendering,
    StyleSpec,
    WorkItem,
)
from emulsion_contracts.profiles import Profile
from emulsion_contracts.reasons import FailureReason
from emulsion_processor import imaging, metrics, original_metadata, rerender, store, uploads
from emulsion_processor.admission import MemoryBudget
from emulsion_processor.cancelled import CancelledJobs
from emulsion_processor.reasons import ItemRejected, TransientTrouble
from emulsion_processor.settings import ProcessorSettings
from emulsion_runtime import messaging, telemetry
from emulsion_runtime.blocking import run_blocking

log = logging.getLogger(__name__)
tracer = trace.get_tracer("emulsion_processor")

T = TypeVar("T")

WORK_CONSUMER: Final = next(c for c in messaging.CONSUMERS if c.durable == wire.PROCESSORS)
MAX_RETRY_DELAY: Final = 300.0
# Errors that say nothing about the item itself: wait them out and try the step again.
TRANSIENT_ERRORS: Final = (
    TransientTrouble,
    ClientError,
    BotoCoreError,
    NatsError,
    asyncio.TimeoutError,
    OSError,
)


def retry_delay(base: float, attempt: int, cap: float = MAX_RETRY_DELAY) -> float:
    return min(cap, base * 2.0 ** max(0, attempt - 1))


class RenderCrashed(Exception):
    """The render process died (the OOM killer, a crashing decoder) on this item.

    Not waited out in-process: an image that kills its renderer every time is a poison
    message, so this delivery is given back and counts against `max_deliver`.
    """


class OutageTooLong(Exception):
    """Transient trouble outlasted the outage budget."""


@dataclass(slots=True)
class Patience:
    """One item's waiting out of transient trouble, against the outage budget."""

    budget: float
    waited: float = 0.0
    retries: int = 0


_patience: ContextVar[Patience | None] = ContextVar("patience", default=None)


def styles_for(
    item: WorkItem, profiles: dict[str, Profile]
) -> tuple[Profile, tuple[StyleSpec, ...]]:
    """The item's profile and the styles to make: its inline styles win over the profile's."""
    profile = profiles.get(item.profile)
    if profile is None:
        raise ItemRejected(
            FailureReason.UNKNOWN_PROFILE,
            f"profile {item.profile!r} is not one of {', '.join(sorted(profiles))}",
        )
    styles = item.styles or profile.styles
    names = [style.name for style in styles]
    if len(set(names)) != len(names):
        raise ItemRejected(FailureReason.INVALID_STYLES, f"style names repeat: {', '.join(names)}")
    return profile, styles


@dataclass(frozen=True, slots=True)
class Clients:
    s3: Any
    js: JetStreamContext
    cancelled: KeyValue


class ItemWorker:
    def __init__(
        self,
        settings: ProcessorSettings,
        clients: Clients,
        profiles: dict[str, Profile],
        cpu: Executor,
        io: Executor,
        scratch: Path,
        renew_cpu: Callable[[], Executor] | None = None,
        cancelled_jobs: CancelledJobs | None = None,
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.profiles = profiles
        self.cpu = cpu
        self.io = io
        self.scratch = scratch
        self.renew_cpu = renew_cpu
        # Answers the check before an item's work from memory; None: read the bucket.
        self.cancelled_jobs = cancelled_jobs
        self.memory = MemoryBudget(settings.memory_budget_bytes)
        self.signing_key = settings.signing_key()

    # -- the message ---------------------------------------------------------------------

    async def handle(self, msg: Msg) -> None:
        """Process `msg` to a published result and an ack; give it back only at shutdown."""
        received = time.monotonic()
        if not await self._trusted(msg):
            return
        try:
            item = WorkItem.from_bytes(msg.data)
        except ValidationError as error:
            await self._invalid_message(msg, error)
            return
        assert isinstance(item, WorkItem)
        deliveries = int(msg.metadata.num_delivered)
        handed_back = _int_header(msg, wire.HEADER_HANDED_BACK)
        attempt = handed_back + deliveries
        context = telemetry.extract(msg.headers)
        attributes: dict[str, str | int] = {
            "emulsion.job": f"{item.job.namespace}/{item.job.name}",
            "emulsion.index": item.index,
            "emulsion.version": item.version,
            "messaging.delivery": attempt,
            **telemetry.messaging_attributes(
                telemetry.Operation.PROCESS,
                msg.subject,
                (msg.headers or {}).get(wire.HEADER_MSG_ID),
            ),
        }
        patience = Patience(self.settings.outage_budget_seconds)
        _patience.set(patience)  # this task's own context: one per item
        with (
            tracer.start_as_current_span(
                telemetry.messaging_span_name(telemetry.Operation.PROCESS, msg.subject),
                context=context,
                kind=trace.SpanKind.CONSUMER,
                attributes=attributes,
            ) as span,
            self._heartbeat(msg, patience),
        ):
            metrics.IN_FLIGHT.inc()
            try:
                result = await self.result_or_give_back(item, attempt, deliveries)
                if isinstance(result, GiveBack):
                    # Only a dead render process gets here: counted, as a crash must be.
                    await msg.nak(delay=result.delay)
                    return
                span.set_attribute("emulsion.outcome", result.outcome)
                if result.reason:
                    span.set_attribute("emulsion.reason", result.reason)
                await self._publish_and_ack(msg, item.job, item.index, result)
            except asyncio.CancelledError:
                # Shutdown ran out of drain time: hand the item to another worker now.
                metrics.GIVEN_BACK.labels("shutdown").inc()
                await asyncio.shield(self.hand_back(msg))
                raise
            finally:
                metrics.IN_FLIGHT.dec()
                metrics.ITEM_SECONDS.observe(time.monotonic() - received)

    async def hand_back(self, msg: Msg) -> None:
        """Give `msg` back without spending a delivery: republish it, then ack this copy.

        A nak would count against `max_deliver`, so a few rolling restarts during an
        outage could fail an item that never crashed anything. The copy gets its own
        Nats-Msg-Id (the original's is still in the duplicate window) and carries the
        deliveries so far, so `attempts` stays true. A crash between the two steps leaves
        both copies, which is harmless: every item is idempotent. The copy keeps the
        controller's signature header: it signs only the subject and body, both unchanged.
        """
        headers = dict(msg.headers or {})
        original_id = headers.get(wire.HEADER_MSG_ID, "")
        headers[wire.HEADER_MSG_ID] = wire.handback_msg_id(original_id)
        headers[wire.HEADER_HANDED_BACK] = str(
            _int_header(msg, wire.HEADER_HANDED_BACK) + int(msg.metadata.num_delivered)
        )
        try:
            await self.clients.js.publish(msg.subject, msg.data, headers=headers)
            await msg.ack_sync()
        except (NatsError, TimeoutError, OSError) as error:
            log.warning("could not republish a handed-back item, giving it back: %s", error)
            with contextlib.suppress(NatsError, TimeoutError, OSError):
                await msg.nak()

    async def _trusted(self, msg: Msg) -> bool:
        """Whether `msg` carries the controller's signature; one that does not is terminated.

        Checked before the body is even parsed: an unsigned or forged item must not make
        this processor read a source, write a key, commit a manifest, ask for a GC or
        publish a result (a forged result could end a real job's item). Terminated, not
        given back: no redelivery can ever make it verify.
        """
        headers = msg.headers or {}
        cause = worksigning.refusal(
            self.signing_key, msg.subject, msg.data, headers.get(worksigning.HEADER)
        )
        if cause is None:
            return True
        log.warning(
            "refused a work message whose signature is %s; terminated without reading it",
            cause,
            extra={
                "subject": msg.subject,
                "msg_id": headers.get(wire.HEADER_MSG_ID),
                "cause": cause,
            },
        )
        metrics.REFUSED.labels(cause).inc()
        await msg.term()
        return False

    async def _invalid_message(self, msg: Msg, error: ValidationError) -> None:
        """A work message that cannot be read fails as an item, if it can be addressed."""
        address = wire.work_address(msg.subject, (msg.headers or {}).get(wire.HEADER_MSG_ID))
        if address is None:
            # No job to report to: nothing can ever come of redelivering it.
            log.error("terminating an unreadable, unaddressable work message: %s", error)
            await msg.term()
            metrics.ITEMS.labels("failed", FailureReason.INVALID_MESSAGE).inc()
            return
        job, index = address.job, address.index
        log.error("work message %s/%s cannot be read: %s", job.name, index, error)
        result = ItemResult(
            job=job,
            index=index,
            outcome="failed",
            reason=FailureReason.INVALID_MESSAGE,
            message=f"the work message cannot be read: {_first_line(error)}",
            attempts=int(msg.metadata.num_delivered),
            finished_at=datetime.now(UTC),
        )
        await self._publish_and_ack(msg, job, index, result)

    async def result_or_give_back(
        self, item: WorkItem, attempt: int, deliveries: int | None = None
    ) -> ItemResult | GiveBack:
        """The item's final result, or how long to wait before a dead renderer is retried."""
        deliveries = attempt if deliveries is None else deliveries
        try:
            return await self.process(item, attempt)
        except ItemRejected as rejected:
            log.info("item %s/%s failed: %s", item.job.name, item.index, rejected)
            return ItemResult.failed(item, rejected.reason, rejected.message, attempt)
        except OutageTooLong as outage:
            return ItemResult.failed(item, FailureReason.RETRIES_EXHAUSTED, str(outage), attempt)
        except RenderCrashed as crash:
            return self._after_crash(item, attempt, deliveries, str(crash))
        except TRANSIENT_ERRORS as error:
            # Transient trouble is waited out where it happens; one that slipped past is
            # given back like a crash rather than mistaken for a fault of the item.
            return self._after_crash(item, attempt, deliveries, f"{type(error).__name__}: {error}")
        except Exception as error:
            # Not transient (that is waited out where it happens) and not the image's
            # known faults: a defect that would recur on every delivery. Fail it now.
            log.exception("unexpected error on %s/%s", item.job.name, item.index)
            message = f"unexpected {type(error).__name__}: {error}"
            return ItemResult.failed(item, FailureReason.RENDER_FAILED, message, attempt)

    def _after_crash(
        self, item: WorkItem, attempt: int, deliveries: int, problem: str
    ) -> ItemResult | GiveBack:
        if deliveries >= WORK_CONSUMER.max_deliver:
            message = f"gave up after {attempt} deliveries; last error: {problem}"
            return ItemResult.failed(item, FailureReason.RETRIES_EXHAUSTED, message, attempt)
        log.warning(
            "giving back %s/%s (delivery %d): %s", item.job.name, item.index, attempt, problem
        )
        metrics.GIVEN_BACK.labels("crash").inc()
        return GiveBack(retry_delay(self.settings.retry_delay_seconds, deliveries))

    async def _publish_and_ack(
        self, msg: Msg, job: JobRef, index: int, outcome: ItemResult
    ) -> None:
        try:
            await self._publish(
                wire.events_subject(job.namespace, job.name),
                outcome.to_bytes(),
                wire.result_msg_id(job.uid, index),
            )
        except (*TRANSIENT_ERRORS, OutageTooLong) as error:
            # Unacknowledged, the item comes back; its result is then published again
            # (under the same Nats-Msg-Id) without redoing the work.
            log.warning("could not publish the result of %s/%s: %s", job.name, index, error)
            metrics.GIVEN_BACK.labels("transient").inc()
            await msg.nak(delay=self.settings.retry_delay_seconds)
            return
        # Confirmed (a round trip), not a plain ack: a plain ack saves ~1 ms per item, but
        # the fault suite's disk-full case then saw an item delivered twice, which the
        # promise "waiting spends no delivery" forbids; until that is understood, the
        # confirmed ack that kept it at one delivery stays.
        await msg.ack_sync()
        metrics.ITEMS.labels(outcome.outcome, outcome.reason or "").inc()

    @contextmanager
    def _heartbeat(self, msg: Msg, patience: Patience | None = None) -> Iterator[None]:
        async def beat() -> None:
            # Bounded, so an item stuck for good (a wedged decoder, a hung socket) is
            # redelivered to another worker instead of being kept alive forever. Time
            # spent waiting out an outage is not work, so it extends the bound.
            started = time.monotonic()
            while time.monotonic() < (
                started + self.settings.max_item_seconds + (patience.waited if patience else 0)
            ):
                await asyncio.sleep(self.settings.heartbeat_seconds)
                try:
                    await msg.in_progress()
                except NatsError as error:
                    log.warning("in-progress heartbeat failed: %s", error)

        task = asyncio.create_task(beat())
        try:
            yield
        finally:
            task.cancel()

    async def _patiently(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """`call()`, tried again on transient trouble with capped exponential backoff.

        Each step is idempotent (keys embed the version, commits are conditional), so a
        step is simply repeated. The wait ends with `OutageTooLong` when the item's outage
        budget is spent.
        """
        patience = _patience.get()
        if patience is None:
            patience = Patience(self.settings.outage_budget_seconds)
            _patience.set(patience)
        while True:
            try:
                return await call()
            except TRANSIENT_ERRORS as error:
                problem = f"{type(error).__name__}: {error}"
                delay = retry_delay(
                    self.settings.retry_delay_seconds,
                    patience.retries + 1,
                    self.settings.retry_max_delay_seconds,
                )
                if patience.waited + delay > patience.budget:
                    raise OutageTooLong(
                        f"{what} still failing after {patience.waited:.0f}s of retries "
                        f"(outage budget {patience.budget:.0f}s); last error: {problem}"
                    ) from None
                log.warning("%s failed, retrying in %.1fs: %s", what, delay, problem)
                metrics.TRANSIENT_RETRIES.labels(what).inc()
                patience.retries += 1
                patience.waited += delay
                await asyncio.sleep(delay)

    # -- the item ------------------------------------------------------------------------

    async def process(self, item: WorkItem, attempt: int) -> ItemResult:
        # First: an upload of another collection is never read, nor named in a GC request.
        if item.rerender:
            rerender.check_source(item)
        else:
            uploads.check_source(item)
        await self._stop_if_cancelled(item, exact=self.cancelled_jobs is None)
        profile, styles = styles_for(item, self.profiles)
        if item.rerender:
            styles = rerender.crop_styles(styles)
        manifest_key = keys.manifest_key(item.collection, item.asset)
        current = await self._io(
            store.read_manifest, self.clients.s3, self.settings.bucket, manifest_key
        )
        decided = store.decide(current, item.version)
        if decided is not None and current is not None and current.manifest is not None:
            # Redelivered after it finished, or a later job already owns the asset: the
            # source is not needed and no key is rewritten.
            if decided is store.Outcome.STALE:
                # An earlier delivery may have written them before it died; keys that
                # were never written cost the janitor one harmless delete.
                await self._gc(item, "stale", planned_keys(item, profile, styles))
            if not item.rerender:  # a re-render's source is the live original
                await self._gc(item, "promoted", (item.source,))
            return finished(item, decided, current.manifest, attempt)
        workdir = Path(tempfile.mkdtemp(prefix="item-", dir=self.scratch))
        try:
            if item.rerender:
                return await self._remake(item, attempt, profile, styles, workdir, current)
            return await self._make(item, attempt, profile, styles, workdir, manifest_key, current)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    async def _make(
        self,
        item: WorkItem,
        attempt: int,
        profile: Profile,
        styles: tuple[StyleSpec, ...],
        workdir: Path,
        manifest_key: str,
        read: store.Current | None,
    ) -> ItemResult:
        settings, s3 = self.settings, self.clients.s3
        focal = focal_point(item, read)
        source, rendered = await self._download_and_render(item, profile, styles, workdir, focal)
        stripped = await self._stripped_original(profile, source.path, workdir)
        manifest = build_manifest(
            item, rendered, stripped.bytes if stripped else source.bytes, focal
        )
        with self._stage("upload"):
            await self._io(uploads.claim, s3, settings.bucket, item)
            try:
                await self._upload(
                    item, rendered, manifest, source.etag, stripped.path if stripped else None
                )
            except ItemRejected:
                # The original was not promoted (its source changed or vanished): the
                # derivatives written beside it will never be live.
                await self._gc(item, "stale", tuple(sorted(manifest.live_keys())))
                raise
        await self._stop_if_cancelled(item, written=manifest.live_keys())
        with self._stage("commit"):
            # The read that decided to do the work is the first round's: its ETag (or
            # its absence) conditions the write, so no second GET is needed.
            committed = await self._io(
                partial(
                    store.commit_manifest, s3, settings.bucket, manifest_key, manifest, read=read
                )
            )
        if committed.outcome is store.Outcome.COMMITTED and committed.other is not None:
            replaced = committed.other.live_keys() - manifest.live_keys()
            await self._gc(item, "superseded", tuple(sorted(replaced)))
        elif committed.outcome is store.Outcome.STALE:
            await self._gc(item, "stale", tuple(sorted(manifest.live_keys())))
        await self._gc(item, "promoted", (item.source,))
        if committed.outcome is store.Outcome.STALE:
            return finished(item, store.Outcome.STALE, committed.other, attempt)
        return finished(item, committed.outcome, manifest, attempt)

    async def _remake(
        self,
        item: WorkItem,
        attempt: int,
        profile: Profile,
        styles: tuple[StyleSpec, ...],
        workdir: Path,
        read: store.Current | None,
    ) -> ItemResult:
        """Re-render the live version's crop styles from its stored original (rerender.py)."""
        settings, s3 = self.settings, self.clients.s3
        live = rerender.live_manifest(read, item)
        if live is None or read is None:
            current = read.manifest if read is not None else None
            return finished(item, store.Outcome.STALE, current, attempt)
        _, rendered = await self._download_and_render(
            item, profile, styles, workdir, item.focal_point
        )
        made = tuple(_derivative(item, output) for output in rendered.styles)
        manifest = rerender.build_manifest(item, live, made)
        written = manifest.live_keys() - live.live_keys()
        with self._stage("upload"):
            await asyncio.gather(
                *(
                    self._io(
                        store.upload_file,
                        s3,
                        settings.bucket,
                        rendering.key,
                        file.path,
                        file.content_type,
                    )
                    for output, derivative in zip(rendered.styles, made, strict=True)
                    for file, rendering in zip(
                        output.files, derivative.all_renderings(), strict=True
                    )
                )
            )
        await self._stop_if_cancelled(item, written=written)
        with self._stage("commit"):
            committed = await self._io(
                partial(
                    rerender.commit,
                    s3,
                    settings.bucket,
                    keys.manifest_key(item.collection, item.asset),
                    manifest,
                    read,
                )
            )
        if committed.outcome is store.Outcome.COMMITTED:
            await self._gc(
                item, "superseded", tuple(sorted(live.live_keys() - manifest.live_keys()))
            )
        elif committed.outcome is store.Outcome.STALE:
            await self._gc(item, "stale", tuple(sorted(written)))
        if committed.outcome is store.Outcome.COMMITTED:
            return finished(item, committed.outcome, manifest, attempt)
        return finished(item, committed.outcome, committed.other, attempt)

    async def _download_and_render(
        self,
        item: WorkItem,
        profile: Profile,
        styles: tuple[StyleSpec, ...],
        workdir: Path,
        focal: FocalPoint | None,
    ) -> tuple[store.Downloaded, imaging.Rendered]:
        """The source streamed to scratch (its recorded collection checked), then rendered
        within the memory admission: the part an upload and a re-render share."""
        settings = self.settings
        with self._stage("download"):
            source = await self._io(
                partial(
                    store.download,
                    self.clients.s3,
                    settings.bucket,
                    item.source,
                    workdir / "source",
                    max_bytes=settings.max_source_bytes,
                    min_free_bytes=settings.min_free_scratch_bytes,
                )
            )
            metrics.BYTES.labels("downloaded").inc(source.bytes)
            if not item.rerender:  # only an upload's form records its collection
                uploads.check_recorded_collection(item, source.metadata)
            watermark_image = await self._watermark_image(profile, styles, workdir)
        outputs = workdir / "out"
        outputs.mkdir()
        job = imaging.RenderJob(
            source=source.path,
            out_dir=outputs,
            styles=styles,
            format=profile.format,
            quality=profile.quality,
            max_pixels=settings.max_pixels,
            max_frames=settings.max_frames,
            watermark=profile.watermark,
            watermark_image=watermark_image,
            focal_point=focal,
        )
        cost = await self._io(imaging.decode_cost, job)
        async with self.memory.admit(cost):
            rendered = await self._patiently("render", partial(self._render, job))
        record_timings(rendered.timings)
        return source, rendered

    async def _render(self, job: imaging.RenderJob) -> imaging.Rendered:
        try:
            return await run_blocking(imaging.render, job, executor=self.cpu)
        except BrokenExecutor as error:
            # A render process died (the OOM killer, a crashing decoder): that pool takes
            # no more work, so a fresh one serves the next items and this one is retried.
            if self.renew_cpu is not None:
                broken, self.cpu = self.cpu, self.renew_cpu()
                broken.shutdown(wait=False, cancel_futures=True)
            raise RenderCrashed(f"the render worker died: {error}") from None

    async def _stripped_original(
        self, profile: Profile, source: Path, workdir: Path
    ) -> store.Downloaded | None:
        """The original without the metadata the profile strips, made from the scratch file
        that was validated and rendered; None when the profile strips nothing."""
        if not profile.original.strip:
            return None
        plan = original_metadata.Plan.from_names(profile.original.strip)
        with self._stage("strip"):
            try:
                stripped = await self._io(
                    original_metadata.strip_file, source, workdir / "original", plan
                )
            except original_metadata.MetadataError as error:
                # Storing it unstripped would break the profile's promise (GPS could stay).
                raise ItemRejected(
                    FailureReason.CORRUPT_IMAGE,
                    f"the metadata the profile strips from the original cannot be read: {error}",
                ) from None
        log.debug("stripped %s from the original", ", ".join(stripped.removed) or "nothing")
        return store.Downloaded(workdir / "original", stripped.bytes)

    async def _upload(
        self,
        item: WorkItem,
        rendered: imaging.Rendered,
        manifest: AssetManifest,
        etag: str,
        stripped: Path | None = None,
    ) -> None:
        s3, bucket = self.clients.s3, self.settings.bucket
        original = manifest.original
        # A stripped original is other bytes than the upload, so it is put from scratch;
        # otherwise the upload is promoted by a server-side copy.
        calls = [
            self._io(store.upload_file, s3, bucket, original.key, stripped, original.content_type)
            if stripped is not None
            else self._io(
                store.copy_original,
                s3,
                bucket,
                item.source,
                original.key,
                original.content_type,
                etag,
            )
        ]
        for output, derivative in zip(rendered.styles, manifest.derivatives, strict=True):
            for file, rendering in zip(output.files, derivative.all_renderings(), strict=True):
                calls.append(
                    self._io(
                        store.upload_file, s3, bucket, rendering.key, file.path, file.content_type
                    )
                )
                metrics.BYTES.labels("uploaded").inc(file.bytes)
        tasks = [asyncio.ensure_future(call) for call in calls]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            # One upload ended the item (a refused key, a vanished source): the others
            # must not go on retrying, or writing, after its result is out.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _watermark_image(
        self, profile: Profile, styles: tuple[StyleSpec, ...], workdir: Path
    ) -> Path | None:
        mark = profile.watermark
        if mark is None or mark.image_key is None or not any(s.watermark for s in styles):
            return None
        downloaded = await self._io(
            partial(
                store.download,
                self.clients.s3,
                self.settings.bucket,
                mark.image_key,
                workdir / "watermark.png",
                max_bytes=10 * 1024 * 1024,
                min_free_bytes=self.settings.min_free_scratch_bytes,
            )
        )
        return downloaded.path

    async def _stop_if_cancelled(
        self, item: WorkItem, written: frozenset[str] = frozenset(), *, exact: bool = True
    ) -> None:
        """Reject `item` if its job was deleted: `exact` reads the bucket, else the watch
        answers (it may lag; the exact check before the commit is what guards it)."""
        if exact:
            cancelled = await self._patiently("cancelled check", partial(self._is_cancelled, item))
        else:
            cancelled = self.cancelled_jobs is not None and item.job.uid in self.cancelled_jobs
        if not cancelled:
            return
        if written:
            # Never made live, so nothing will reference them: the janitor may take them.
            await self._gc(item, "stale", tuple(sorted(written)))
        raise ItemRejected(
            FailureReason.CANCELLED, f"job {item.job.namespace}/{item.job.name} was deleted"
        )

    async def _is_cancelled(self, item: WorkItem) -> bool:
        try:
            await self.clients.cancelled.get(item.job.uid)
        except (KeyNotFoundError, KeyDeletedError):
            return False
        return True

    async def _gc(self, item: WorkItem, reason: GcReason, doomed: tuple[str, ...]) -> None:
        if not doomed:
            return
        request = GcRequest(
            reason=reason,
            keys=doomed,
            not_before=datetime.now(UTC) + timedelta(seconds=self.settings.gc_grace_seconds),
            collection=item.collection,
            asset=item.asset,
        )
        await self._publish(
            wire.gc_subject(reason), request.to_bytes(), wire.gc_msg_id(reason, item.version)
        )

    async def _publish(self, subject: str, payload: bytes, msg_id: str) -> None:
        headers = telemetry.message_headers(subject, {wire.HEADER_MSG_ID: msg_id})
        # Deduplicated by Nats-Msg-Id, so a publish that timed out may simply be repeated.
        await self._patiently(
            "publish", partial(self.clients.js.publish, subject, payload, headers=headers)
        )

    async def _io(self, function: Callable[..., T], *arguments: Any) -> T:
        """A storage call on the I/O threads, waited out through transient trouble."""
        name = getattr(getattr(function, "func", function), "__name__", "storage")
        return await self._patiently(
            name,
            lambda: run_blocking(
                store.keys_refused_for_good, function, *arguments, executor=self.io
            ),
        )

    @contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        with tracer.start_as_current_span(name):
            yield
        metrics.STAGE_SECONDS.labels(name).observe(time.monotonic() - started)


@dataclass(frozen=True, slots=True)
class GiveBack:
    """Hand the message back, to be redelivered after `delay` seconds."""

    delay: float


def record_timings(timings: tuple[imaging.Timing, ...]) -> None:
    """Spans and stage metrics for work measured in the render executor."""
    for timing in timings:
        span = tracer.start_span(timing.name, start_time=timing.start_ns)
        span.end(end_time=timing.end_ns)
        stage = "style" if timing.name.startswith("style ") else timing.name
        metrics.STAGE_SECONDS.labels(stage).observe((timing.end_ns - timing.start_ns) / 1e9)


def planned_keys(
    item: WorkItem, profile: Profile, styles: tuple[StyleSpec, ...]
) -> tuple[str, ...]:
    """Every key this item writes, known before any work: keys embed only the item's data."""
    original = keys.original_key(
        item.collection, item.asset, item.version, source_filename(item.source)
    )
    derivatives = (
        keys.rendering_key(item.collection, item.asset, item.version, style.name, output_format)
        for style in styles
        for output_format in style.output_formats(profile.format)
    )
    return tuple(sorted({original, *derivatives}))


def source_filename(source: str) -> str:
    return keys.safe_name(source.rsplit("/", 1)[-1])


def focal_point(item: WorkItem, read: store.Current | None) -> FocalPoint | None:
    """An upload's focal point: the item's, else the live manifest's (set through the API
    on the version this upload replaces: a new photo of the asset keeps it)."""
    if item.focal_point is not None:
        return item.focal_point
    if read is None or read.manifest is None:
        return None
    return read.manifest.focal_point


def build_manifest(
    item: WorkItem,
    rendered: imaging.Rendered,
    source_bytes: int,
    focal: FocalPoint | None = None,
) -> AssetManifest:
    filename = source_filename(item.source)
    original = Original(
        key=keys.original_key(item.collection, item.asset, item.version, filename),
        filename=filename,
        content_type=rendered.content_type,
        bytes=source_bytes,
        width=rendered.width,
        height=rendered.height,
    )
    derivatives = tuple(_derivative(item, output) for output in rendered.styles)
    return AssetManifest(
        collection=item.collection,
        asset=item.asset,
        version=item.version,
        job=item.job,
        index=item.index,
        original=original,
        derivatives=derivatives,
        committed_at=datetime.now(UTC),
        focal_point=focal,
        profile=item.profile,
    )


def _derivative(item: WorkItem, output: imaging.RenderedStyle) -> Derivative:
    """A style's manifest entry; a style with several formats lists each rendering."""
    renderings = tuple(
        Rendering(
            format=file.format,
            key=keys.rendering_key(
                item.collection, item.asset, item.version, output.style, file.format
            ),
            bytes=file.bytes,
            content_type=file.content_type,
        )
        for file in output.files
    )
    return Derivative(
        style=output.style,
        key=keys.derivative_key(
            item.collection, item.asset, item.version, output.style, output.extension
        ),
        width=output.width,
        height=output.height,
        bytes=output.bytes,
        content_type=output.content_type,
        renderings=renderings if len(renderings) > 1 else (),
    )


def finished(
    item: WorkItem, outcome: store.Outcome, manifest: AssetManifest | None, attempt: int
) -> ItemResult:
    """The succeeded result: this item's version is live (or lost, fairly, to a later one)."""
    if outcome is store.Outcome.STALE or manifest is None:
        live = manifest.version if manifest else "a later version"
        return ItemResult(
            job=item.job,
            index=item.index,
            outcome="succeeded",
            message=f"not made live: {live} of the asset is from a later job",
            collection=item.collection,
            asset=item.asset,
            version=item.version,
            committed=False,
            attempts=attempt,
            finished_at=datetime.now(UTC),
        )
    return ItemResult(
        job=item.job,
        index=item.index,
        outcome="succeeded",
        collection=item.collection,
        asset=item.asset,
        version=item.version,
        original=manifest.original.key,
        width=manifest.original.width,
        height=manifest.original.height,
        outputs=manifest.derivatives,
        committed=True,
        attempts=attempt,
        finished_at=datetime.now(UTC),
    )


def _int_header(msg: Msg, name: str) -> int:
    value = (msg.headers or {}).get(name, "")
    return int(value) if value.isdigit() else 0


def _first_line(error: ValidationError) -> str:
    return (
        str(error).splitlines()[0]
        + "; "
        + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()[:3])
    )
