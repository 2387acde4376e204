"""One work item, from message to acknowledgement.

The order is what makes redelivery safe: a manifest that already names this item's
version means an earlier delivery finished, so nothing is redone; every key an item
writes embeds its version, so a retry rewrites the same keys; the result is published
(and stored by JetStream) before the message is acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import BrokenExecutor, Executor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import KeyDeletedError, KeyNotFoundError
from nats.js.kv import KeyValue
from opentelemetry import trace
from pydantic import ValidationError

from emulsion_contracts import keys, messaging, telemetry
from emulsion_contracts.manifest import AssetManifest, Original
from emulsion_contracts.messages import Derivative, GcRequest, ItemResult, StyleSpec, WorkItem
from emulsion_contracts.profiles import Profile
from emulsion_processor import imaging, metrics, store
from emulsion_processor.reasons import ItemRejected, Reason, TransientTrouble
from emulsion_processor.settings import ProcessorSettings

log = logging.getLogger(__name__)
tracer = trace.get_tracer("emulsion_processor")

T = TypeVar("T")
GcReason = Literal["superseded", "stale", "promoted"]

WORK_CONSUMER: Final = next(c for c in messaging.CONSUMERS if c.durable == messaging.PROCESSORS)
MAX_RETRY_DELAY: Final = 300.0
# Errors that say nothing about the item itself: give it back and try again later.
TRANSIENT_ERRORS: Final = (
    TransientTrouble,
    ClientError,
    BotoCoreError,
    NatsError,
    asyncio.TimeoutError,
    OSError,
)


def result_msg_id(item: WorkItem) -> str:
    return f"{item.job.uid}/{item.index}/result"


def gc_msg_id(reason: GcReason, version: str) -> str:
    return f"gc/{reason}/{version}"


def retry_delay(base: float, attempt: int) -> float:
    return min(MAX_RETRY_DELAY, base * 2.0 ** max(0, attempt - 1))


def styles_for(
    item: WorkItem, profiles: dict[str, Profile]
) -> tuple[Profile, tuple[StyleSpec, ...]]:
    """The item's profile and the styles to make: its inline styles win over the profile's."""
    profile = profiles.get(item.profile)
    if profile is None:
        raise ItemRejected(
            Reason.UNKNOWN_PROFILE,
            f"profile {item.profile!r} is not one of {', '.join(sorted(profiles))}",
        )
    styles = item.styles or profile.styles
    names = [style.name for style in styles]
    if len(set(names)) != len(names):
        raise ItemRejected(Reason.INVALID_STYLES, f"style names repeat: {', '.join(names)}")
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
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.profiles = profiles
        self.cpu = cpu
        self.io = io
        self.scratch = scratch
        self.renew_cpu = renew_cpu

    # -- the message ---------------------------------------------------------------------

    async def handle(self, msg: Msg) -> None:
        """Process `msg` to a published result and an ack, or give it back (nak)."""
        received = time.monotonic()
        try:
            item = WorkItem.from_bytes(msg.data)
        except ValidationError as error:
            # Without a valid job reference no result can be addressed; terminating
            # stops redelivery of a message that can never succeed.
            log.error("terminating an unreadable work message: %s", error)
            await msg.term()
            metrics.ITEMS.labels("failed", "InvalidMessage").inc()
            return
        assert isinstance(item, WorkItem)
        attempt = int(msg.metadata.num_delivered)
        context = telemetry.extract(msg.headers)
        attributes: dict[str, str | int] = {
            "emulsion.job": f"{item.job.namespace}/{item.job.name}",
            "emulsion.index": item.index,
            "emulsion.version": item.version,
            "messaging.delivery": attempt,
        }
        with (
            tracer.start_as_current_span(
                "process item", context=context, kind=trace.SpanKind.CONSUMER, attributes=attributes
            ) as span,
            self._heartbeat(msg),
        ):
            metrics.IN_FLIGHT.inc()
            try:
                result = await self._result(item, attempt)
                if isinstance(result, GiveBack):
                    await msg.nak(delay=result.delay)
                    return
                span.set_attribute("emulsion.outcome", result.outcome)
                if result.reason:
                    span.set_attribute("emulsion.reason", result.reason)
                await self._publish_and_ack(msg, item, result)
            except asyncio.CancelledError:
                # Shutdown ran out of drain time: hand the item to another worker now.
                metrics.GIVEN_BACK.labels("shutdown").inc()
                await asyncio.shield(msg.nak())
                raise
            finally:
                metrics.IN_FLIGHT.dec()
                metrics.ITEM_SECONDS.observe(time.monotonic() - received)

    async def _result(self, item: WorkItem, attempt: int) -> ItemResult | GiveBack:
        """The item's final result, or how long to wait before it is tried again."""
        try:
            return await self.process(item, attempt)
        except ItemRejected as rejected:
            log.info("item %s/%s failed: %s", item.job.name, item.index, rejected)
            return failed(item, rejected.reason, rejected.message, attempt)
        except TRANSIENT_ERRORS as error:
            return await self._transient(item, attempt, f"{type(error).__name__}: {error}")
        except Exception as error:
            # A defect, not the item's fault: retried like transient trouble, and
            # reported after the last delivery rather than lost.
            log.exception("unexpected error on %s/%s", item.job.name, item.index)
            return await self._transient(item, attempt, f"{type(error).__name__}: {error}")

    async def _transient(self, item: WorkItem, attempt: int, problem: str) -> ItemResult | GiveBack:
        if attempt >= WORK_CONSUMER.max_deliver:
            message = f"gave up after {attempt} deliveries; last error: {problem}"
            return failed(item, Reason.RETRIES_EXHAUSTED, message, attempt)
        log.warning(
            "giving back %s/%s (delivery %d): %s", item.job.name, item.index, attempt, problem
        )
        metrics.GIVEN_BACK.labels("transient").inc()
        return GiveBack(retry_delay(self.settings.retry_delay_seconds, attempt))

    async def _publish_and_ack(self, msg: Msg, item: WorkItem, result: ItemResult) -> None:
        try:
            await self._publish(
                messaging.events_subject(item.job.namespace, item.job.name),
                result.to_bytes(),
                result_msg_id(item),
            )
        except TRANSIENT_ERRORS as error:
            # Unacknowledged, the item comes back; its result is then published again
            # (under the same Nats-Msg-Id) without redoing the work.
            log.warning(
                "could not publish the result of %s/%s: %s", item.job.name, item.index, error
            )
            metrics.GIVEN_BACK.labels("transient").inc()
            await msg.nak(delay=self.settings.retry_delay_seconds)
            return
        await msg.ack_sync()
        metrics.ITEMS.labels(result.outcome, result.reason or "").inc()

    @contextmanager
    def _heartbeat(self, msg: Msg) -> Iterator[None]:
        async def beat() -> None:
            # Bounded, so an item stuck for good (a wedged decoder, a hung socket) is
            # redelivered to another worker instead of being kept alive forever.
            deadline = time.monotonic() + self.settings.max_item_seconds
            while time.monotonic() < deadline:
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

    # -- the item ------------------------------------------------------------------------

    async def process(self, item: WorkItem, attempt: int) -> ItemResult:
        await self._stop_if_cancelled(item)
        profile, styles = styles_for(item, self.profiles)
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
            await self._gc(item, "promoted", (item.source,))
            return finished(item, decided, current.manifest, attempt)
        workdir = Path(tempfile.mkdtemp(prefix="item-", dir=self.scratch))
        try:
            return await self._make(item, attempt, profile, styles, workdir, manifest_key)
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
    ) -> ItemResult:
        settings, s3 = self.settings, self.clients.s3
        with self._stage("download"):
            source = await self._io(
                partial(
                    store.download,
                    s3,
                    settings.bucket,
                    item.source,
                    workdir / "source",
                    max_bytes=settings.max_source_bytes,
                    min_free_bytes=settings.min_free_scratch_bytes,
                )
            )
            metrics.BYTES.labels("downloaded").inc(source.bytes)
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
        )
        rendered = await self._render(job)
        record_timings(rendered.timings)
        manifest = build_manifest(item, rendered, source.bytes)
        with self._stage("upload"):
            await self._upload(item, rendered, manifest)
        await self._stop_if_cancelled(item, written=manifest.live_keys())
        with self._stage("commit"):
            committed = await self._io(
                store.commit_manifest, s3, settings.bucket, manifest_key, manifest
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

    async def _render(self, job: imaging.RenderJob) -> imaging.Rendered:
        try:
            return await asyncio.get_running_loop().run_in_executor(self.cpu, imaging.render, job)
        except BrokenExecutor as error:
            # A render process died (the OOM killer, a crashing decoder): that pool takes
            # no more work, so a fresh one serves the next items and this one is retried.
            if self.renew_cpu is not None:
                broken, self.cpu = self.cpu, self.renew_cpu()
                broken.shutdown(wait=False, cancel_futures=True)
            raise TransientTrouble(f"the render worker died: {error}") from None

    async def _upload(
        self, item: WorkItem, rendered: imaging.Rendered, manifest: AssetManifest
    ) -> None:
        s3, bucket = self.clients.s3, self.settings.bucket
        calls = [self._io(store.copy_original, s3, bucket, item.source, manifest.original.key)]
        for output, derivative in zip(rendered.styles, manifest.derivatives, strict=True):
            calls.append(
                self._io(
                    store.upload_file, s3, bucket, derivative.key, output.path, output.content_type
                )
            )
            metrics.BYTES.labels("uploaded").inc(output.bytes)
        await asyncio.gather(*calls)

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
        self, item: WorkItem, written: frozenset[str] = frozenset()
    ) -> None:
        try:
            await self.clients.cancelled.get(item.job.uid)
        except (KeyNotFoundError, KeyDeletedError):
            return
        if written:
            # Never made live, so nothing will reference them: the janitor may take them.
            await self._gc(item, "stale", tuple(sorted(written)))
        raise ItemRejected(
            Reason.CANCELLED, f"job {item.job.namespace}/{item.job.name} was deleted"
        )

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
            messaging.gc_subject(reason), request.to_bytes(), gc_msg_id(reason, item.version)
        )

    async def _publish(self, subject: str, payload: bytes, msg_id: str) -> None:
        headers = telemetry.inject({messaging.HEADER_MSG_ID: msg_id})
        await self.clients.js.publish(subject, payload, headers=headers)

    async def _io(self, function: Callable[..., T], *arguments: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self.io, partial(function, *arguments)
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
        keys.derivative_key(
            item.collection,
            item.asset,
            item.version,
            style.name,
            imaging.EXTENSIONS[style.format or profile.format],
        )
        for style in styles
    )
    return tuple(sorted({original, *derivatives}))


def source_filename(source: str) -> str:
    return keys.safe_name(source.rsplit("/", 1)[-1])


def build_manifest(item: WorkItem, rendered: imaging.Rendered, source_bytes: int) -> AssetManifest:
    filename = source_filename(item.source)
    original = Original(
        key=keys.original_key(item.collection, item.asset, item.version, filename),
        filename=filename,
        content_type=rendered.content_type,
        bytes=source_bytes,
        width=rendered.width,
        height=rendered.height,
    )
    derivatives = tuple(
        Derivative(
            style=output.style,
            key=keys.derivative_key(
                item.collection, item.asset, item.version, output.style, output.extension
            ),
            width=output.width,
            height=output.height,
            bytes=output.bytes,
            content_type=output.content_type,
        )
        for output in rendered.styles
    )
    return AssetManifest(
        collection=item.collection,
        asset=item.asset,
        version=item.version,
        job=item.job,
        index=item.index,
        original=original,
        derivatives=derivatives,
        committed_at=datetime.now(UTC),
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


def failed(item: WorkItem, reason: Reason, message: str, attempt: int) -> ItemResult:
    return ItemResult(
        job=item.job,
        index=item.index,
        outcome="failed",
        reason=reason.value,
        message=message,
        collection=item.collection,
        asset=item.asset,
        version=item.version,
        attempts=attempt,
        finished_at=datetime.now(UTC),
    )
