"""`emulsion ingest DIR --collection C`: find, upload directly, notify, follow, summarise.

The steps, each recorded in the resume state as it completes (see `resume`):
find the images → settle what earlier runs did → presign in batches and upload to the
object store in parallel → one `POST /v1/ingests` per batch as soon as its files are up
(so the first images are processed while the rest upload), with an Idempotency-Key from
the batch's files → follow every job's server-sent events from its acceptance → per-item
outcomes, without download URLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from emulsion_cli.api import (
    THROTTLED_PATIENCE_SECONDS,
    Api,
    Json,
    Upload,
    event_json,
    throttled_wait,
)
from emulsion_cli.discovery import Discovery, ImageFile, Skipped, discover
from emulsion_cli.errors import ApiRequestError, CliError
from emulsion_cli.idempotency import idempotency_key
from emulsion_cli.patterns import Selection
from emulsion_cli.resume import Ingested, Pending, ResumeState, file_id
from emulsion_cli.sse import Event

# Presigning is cheap; small batches let the first uploads start at once. Each batch is
# one `POST /v1/ingests` once uploaded: the first is small, so processing starts after a
# few files, and batches double up to the largest (fewer jobs for the controller to run).
# Far below the API's request maximum (10,000) and its upload batch maximum (5,000).
FIRST_BATCH: Final = 25
PRESIGN_BATCH: Final = 200
# Saving the state after every file would rewrite it thousands of times.
SAVE_EVERY_SECONDS: Final = 1.0
MAX_RECONNECTS: Final = 5
# Event streams one run keeps open at once: a 10,000-photo run makes some fifty jobs, and
# a token may hold 16 streams per API pod by default; jobs finish roughly in order, so
# following the earliest few loses nothing (a stream starts with the job's status).
MAX_FOLLOWS: Final = 8
RECONNECT_BACKOFF_SECONDS: Final = 1.0


class Reporter(Protocol):
    def note(self, message: str) -> None: ...
    def uploads_planned(self, files: int, total_bytes: int) -> None: ...
    def uploaded(self, size: int) -> None: ...
    def processing_planned(self, items: int) -> None: ...
    def processed(self, done: int) -> None: ...


class SilentReporter:
    def note(self, message: str) -> None:
        pass

    def uploads_planned(self, files: int, total_bytes: int) -> None:
        pass

    def uploaded(self, size: int) -> None:
        pass

    def processing_planned(self, items: int) -> None:
        pass

    def processed(self, done: int) -> None:
        pass


@dataclass(frozen=True)
class Options:
    root: Path
    collection: str
    profile: str = "default"
    concurrency: int = 8
    state_dir: Path | None = None
    selection: Selection = field(default_factory=Selection)
    # False (`--no-wait`): upload, hand the files to the API, and return with the job names.
    wait: bool = True
    # The sizes of the presign-upload-notify batches (see `batch_sizes`).
    first_batch: int = FIRST_BATCH
    most_batch: int = PRESIGN_BATCH


@dataclass(frozen=True)
class Failure:
    file: str
    reason: str


@dataclass
class Tally:
    """What this run did so far; complete even when the run is interrupted."""

    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    found: int = 0
    excluded: int = 0
    not_images: list[Skipped] = field(default_factory=list)
    already_ingested: int = 0
    uploaded_files: int = 0
    uploaded_bytes: int = 0
    reused_uploads: int = 0
    upload_seconds: float = 0.0
    jobs: list[str] = field(default_factory=list)
    items: int = 0
    succeeded: int = 0
    failures: list[Failure] = field(default_factory=list)

    @property
    def wall_seconds(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def images_per_second(self) -> float:
        done = self.succeeded + len(self.failures)
        return done / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def upload_mb_per_second(self) -> float:
        if self.upload_seconds <= 0:
            return 0.0
        return self.uploaded_bytes / 1e6 / self.upload_seconds


@dataclass
class _Run:
    api: Api
    options: Options
    reporter: Reporter
    tally: Tally
    state: ResumeState
    # (job, index in the job) → the local file it makes.
    sources: dict[tuple[str, int], ImageFile] = field(default_factory=dict)
    progress: dict[str, int] = field(default_factory=dict)
    last_save: float = 0.0
    upload_started: float = 0.0
    follows: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_FOLLOWS))

    def save_soon(self) -> None:
        if time.monotonic() - self.last_save >= SAVE_EVERY_SECONDS:
            self.save()

    def save(self) -> None:
        self.state.save()
        self.last_save = time.monotonic()


async def ingest(api: Api, options: Options, reporter: Reporter, tally: Tally) -> Tally:
    """Run one ingest; `tally` is filled in as it goes (read it after an interruption)."""
    found = await find_images(options.root, options.selection)
    tally.found = len(found.images)
    tally.excluded = found.excluded
    tally.not_images = found.skipped
    for skipped in found.skipped:
        reporter.note(f"skipped {skipped.relative}: {skipped.reason}")
    state = ResumeState.for_collection(api.config.api_url, options.collection, options.state_dir)
    run = _Run(api, options, reporter, tally, state)
    try:
        in_flight = await _settle_pending(run, found.images)
        remaining = await _without_ingested(run, [i for i in found.images if i not in in_flight])
        if options.wait:
            # At most this many; exact once every batch is accepted (clashing names drop out).
            reporter.processing_planned(len(run.sources) + len(remaining))
        try:
            async with asyncio.TaskGroup() as following:

                def follow(jobs: Sequence[str]) -> None:
                    # Each job is followed from its acceptance, while later batches upload.
                    for job in jobs:
                        if options.wait and job not in tally.jobs:
                            following.create_task(_follow_and_settle(run, job))
                        if job not in tally.jobs:
                            tally.jobs.append(job)

                follow(sorted({job for job, _ in run.sources}))
                await _send(run, remaining, follow)
                tally.items = len(run.sources)
                tally.jobs.sort()
                if options.wait:
                    reporter.processing_planned(len(run.sources))
        except* CliError as group_error:
            raise first_error(group_error) from None
    finally:
        run.save()
        tally.finished = time.monotonic()
    return tally


def first_error(group: BaseExceptionGroup[CliError]) -> CliError:
    """The first error of a (nested) task group's failure: the one the user is told."""
    first: BaseException = group
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    assert isinstance(first, CliError)
    return first


async def find_images(root: Path, selection: Selection) -> Discovery:
    """Discovery in a thread (hashing is slow), stopped between files when the run is
    cancelled: a thread cannot be cancelled, and the event loop waits for it on exit."""
    stop = threading.Event()
    try:
        return await asyncio.to_thread(discover, root, selection, stop)
    except asyncio.CancelledError:
        stop.set()
        raise


# -- what an ingest would do (--dry-run) --------------------------------------------------


def dry_run(options: Options, state: ResumeState | None) -> Json:
    """What `ingest` would upload and ingest, from the files and the local resume state
    alone: nothing is sent. Files recorded as ingested are listed as such; a real run
    uploads them again only if the API no longer has that version live."""
    found = discover(options.root, options.selection)
    seen: dict[str, str] = {}
    files: list[Json] = []
    for image in found.images:
        fid = file_id(image)
        asset = unicodedata.normalize("NFC", image.upload_name)
        if asset in seen:
            action = f"skip: same asset name as {seen[asset]}"
        elif state is not None and fid in state.ingested:
            action = "ingested earlier (checked with the API when run)"
        elif state is not None and fid in state.pending:
            action = f"follow job {state.pending[fid].job}"
        elif state is not None and fid in state.uploads:
            action = "ingest (uploaded earlier)"
        else:
            action = "upload and ingest"
        seen.setdefault(asset, image.relative)
        files.append(
            {
                "file": image.relative,
                "asset": asset,
                "bytes": image.size,
                "content_type": image.content_type,
                "action": action,
            }
        )
    uploads = [f for f in files if f["action"] == "upload and ingest"]
    return {
        "collection": options.collection,
        "profile": options.profile,
        "found": len(found.images),
        "excluded": found.excluded,
        "to_upload": len(uploads),
        "upload_bytes": sum(f["bytes"] for f in uploads),
        "files": files,
        "not_images": [{"file": s.relative, "reason": s.reason} for s in found.skipped],
    }


# -- what earlier runs did ----------------------------------------------------------------


async def _settle_pending(run: _Run, images: list[ImageFile]) -> set[ImageFile]:
    """Files an earlier run already handed to a job: finished jobs give their outcomes now,
    running ones are followed in this run. Returns the files not to send again."""
    by_id = {file_id(image): image for image in images}
    jobs: dict[str, list[tuple[str, Pending]]] = {}
    for fid, pending in list(run.state.pending.items()):
        if fid in by_id:
            jobs.setdefault(pending.job, []).append((fid, pending))
    in_flight: set[ImageFile] = set()
    for job, entries in jobs.items():
        try:
            status = await run.api.job(job)
        except ApiRequestError as error:
            if error.status != 404:
                raise
            # Gone (its TTL ran out): the outcome is unknown, so send these files again.
            for fid, _ in entries:
                run.state.pending.pop(fid, None)
            continue
        for fid, pending in entries:
            run.sources[(job, pending.job_index)] = by_id[fid]
            in_flight.add(by_id[fid])
        if status.get("finished"):
            run.reporter.note(f"job {job} from an earlier run has finished")
        else:
            run.reporter.note(f"following job {job} from an earlier run")
    return in_flight


async def _without_ingested(run: _Run, images: list[ImageFile]) -> list[ImageFile]:
    """Drop the files an earlier run ingested whose version is still live."""
    limit = asyncio.Semaphore(max(run.options.concurrency, 4))

    async def still_live(image: ImageFile) -> bool:
        recorded = run.state.ingested.get(file_id(image))
        if recorded is None:
            return False
        async with limit:
            asset = await run.api.asset_or_none(run.options.collection, recorded.asset)
        if asset is not None and recorded.version in (None, asset.get("version")):
            return True
        run.state.forget_ingested(file_id(image))
        return False

    live = await asyncio.gather(*(still_live(image) for image in images))
    run.tally.already_ingested = sum(live)
    if run.tally.already_ingested:
        run.reporter.note(
            f"{run.tally.already_ingested} file(s) already ingested into "
            f"{run.options.collection}; not uploaded again"
        )
    return [image for image, is_live in zip(images, live, strict=True) if not is_live]


# -- upload and notify --------------------------------------------------------------------


# A staging key and the asset name its upload records (None: recorded by an older run
# that did not keep names; the API then uses its own record).
Staged = tuple[str, str | None]


def batch_sizes(total: int, first: int, most: int) -> list[int]:
    """How `total` files are cut into batches: `first`, then doubling up to `most`."""
    sizes: list[int] = []
    size = max(1, min(first, most))
    while total > 0:
        sizes.append(min(size, total))
        total -= sizes[-1]
        size = min(size * 2, max(most, 1))
    return sizes


async def _send(
    run: _Run, images: list[ImageFile], follow: Callable[[Sequence[str]], None]
) -> None:
    """Presign, upload and notify batch by batch: a batch is handed to the API as soon as
    its files are up, while the next batches upload (`follow` gets its jobs)."""
    await _settle_in_flight(run)
    todo = [image for image in images if file_id(image) not in run.state.uploads]
    run.tally.reused_uploads += len(images) - len(todo)
    run.reporter.uploads_planned(len(todo), sum(image.size for image in todo))
    limit = asyncio.Semaphore(run.options.concurrency)
    seen: dict[str, ImageFile] = {}
    run.upload_started = time.monotonic()
    position = 0
    async with asyncio.TaskGroup() as group:
        for size in batch_sizes(len(images), run.options.first_batch, run.options.most_batch):
            batch = images[position : position + size]
            position += size
            staged = await _presign(run, batch)
            kept, kept_staged = _unique_assets(run, batch, staged, seen)
            if kept:
                group.create_task(_upload_and_notify(run, limit, kept, kept_staged, follow))


async def _presign(run: _Run, images: list[ImageFile]) -> list[Staged | Upload]:
    """Each file's staging key and asset name from an earlier run's upload, or a fresh
    presigned form (recorded as in flight) for those without one."""
    todo = [image for image in images if file_id(image) not in run.state.uploads]
    forms = (
        await run.api.presign(
            run.options.collection, [(i.upload_name, i.content_type, i.size) for i in todo]
        )
        if todo
        else []
    )
    fresh = dict(zip(todo, forms, strict=True))
    for image, form in fresh.items():
        run.state.record_in_flight(file_id(image), form.key, form.asset)
    if fresh:
        run.state.save()
    return [
        fresh.get(image)
        or (run.state.uploads[file_id(image)], run.state.upload_assets.get(file_id(image)))
        for image in images
    ]


async def _upload_and_notify(
    run: _Run,
    limit: asyncio.Semaphore,
    images: list[ImageFile],
    planned: list[Staged | Upload],
    follow: Callable[[Sequence[str]], None],
) -> None:
    staged = await _upload_batch(run, limit, images, planned)
    follow(await _notify(run, limit, images, staged))


async def _upload_batch(
    run: _Run, limit: asyncio.Semaphore, images: list[ImageFile], planned: list[Staged | Upload]
) -> list[Staged]:
    """Upload the files that have a form; every file's (staging key, asset name)."""
    async with asyncio.TaskGroup() as group:
        for image, form in zip(images, planned, strict=True):
            if isinstance(form, Upload):
                group.create_task(_upload_one(run, limit, image, form))
    return [(form.key, form.asset) if isinstance(form, Upload) else form for form in planned]


async def _settle_in_flight(run: _Run) -> None:
    """Uploads an earlier run sent but saw no answer to (stopped mid-way): those that
    reached the bucket count as uploaded, so no file is stored twice; the rest go again."""
    in_flight = dict(run.state.in_flight)
    if not in_flight:
        return
    present = set(await run.api.uploads_present([key for key, _ in in_flight.values()]))
    for fid, (key, asset) in in_flight.items():
        if key in present:
            run.state.record_upload(fid, key, asset)
        else:
            run.state.in_flight.pop(fid, None)
    run.state.save()


async def _upload_one(run: _Run, limit: asyncio.Semaphore, image: ImageFile, form: Upload) -> None:
    async with limit:
        await run.api.upload(form, image.path, image.content_type)
    run.state.record_upload(file_id(image), form.key, form.asset)
    run.tally.uploaded_files += 1
    run.tally.uploaded_bytes += image.size
    # From the first presign to the last upload's answer: notifies overlap the uploads.
    run.tally.upload_seconds = time.monotonic() - run.upload_started
    run.reporter.uploaded(image.size)
    run.save_soon()


def _unique_assets(
    run: _Run, images: list[ImageFile], planned: list[Staged | Upload], seen: dict[str, ImageFile]
) -> tuple[list[ImageFile], list[Staged | Upload]]:
    """The API refuses a request naming one asset twice, and two requests naming one
    asset would make two versions of it. Names are the files' own (Unicode kept), so only
    files whose flattened paths are the same name clash (`a/b.jpg` and `a-b.jpg`, or one
    name written in two Unicode forms). The first one in the run (`seen`) wins; the others
    are not uploaded."""
    kept_images: list[ImageFile] = []
    kept: list[Staged | Upload] = []
    for image, form in zip(images, planned, strict=True):
        key, recorded = (form.key, form.asset) if isinstance(form, Upload) else form
        asset = recorded or key.rsplit("/", 1)[-1]
        if asset in seen:
            reason = f"same asset name {asset!r} as {seen[asset].relative}"
            run.reporter.note(f"skipped {image.relative}: {reason}")
            run.tally.failures.append(Failure(image.relative, reason))
            run.state.in_flight.pop(file_id(image), None)
            continue
        seen[asset] = image
        kept_images.append(image)
        kept.append(form)
    return kept_images, kept


async def _notify(
    run: _Run, limit: asyncio.Semaphore, images: list[ImageFile], staged: list[Staged]
) -> list[str]:
    collection, profile = run.options.collection, run.options.profile
    files = [(image.sha256, image.relative) for image in images]
    try:
        accepted = await run.api.ingest(
            collection, profile, staged, idempotency_key(collection, profile, files)
        )
    except ApiRequestError as error:
        if error.code == "upload_missing":
            # Staging keys recorded by an earlier run have expired, were ingested already,
            # or are of an older key layout: upload those again.
            run.reporter.note("uploads from an earlier run have expired; uploading again")
            for image in images:
                run.state.forget_upload(file_id(image))
            staged = await _upload_batch(run, limit, images, await _presign(run, images))
        elif error.code != "idempotency_key_reused":
            raise
        accepted = await run.api.ingest(
            collection,
            profile,
            staged,
            idempotency_key(collection, profile, files, [key for key, _ in staged]),
        )
    if accepted.replayed:
        run.reporter.note(f"the API already had this ingest ({accepted.name}); following it")
    if sorted(item.index for item in accepted.items) != list(range(len(images))):
        raise CliError(f"the API accepted {len(accepted.items)} of {len(images)} items")
    for item in accepted.items:
        image = images[item.index]
        run.sources[(item.job, item.job_index)] = image
        run.state.record_pending(file_id(image), Pending(item.job, item.job_index, item.asset))
    run.save()
    return accepted.jobs


# -- follow the jobs ----------------------------------------------------------------------


async def _follow_and_settle(run: _Run, job: str) -> None:
    async with run.follows:
        final = await follow_job(run.api, job, lambda done: _job_progress(run, job, done))
    items = await run.api.job_items(job)
    messages = {f.get("index"): f.get("message") for f in final.get("failures") or []}
    for item in items:
        image = run.sources.get((job, int(item["index"])))
        if image is None:
            continue
        fid = file_id(image)
        if item.get("state") == "succeeded":
            run.state.record_succeeded(fid, Ingested(item["asset"], item.get("version"), job))
            run.tally.succeeded += 1
        else:
            run.state.record_failed(fid)
            reason = str(item.get("reason") or "unknown")
            message = messages.get(item["index"])
            run.tally.failures.append(
                Failure(image.relative, f"{reason}: {message}" if message else reason)
            )
    run.save()


def _job_progress(run: _Run, job: str, done: int) -> None:
    run.progress[job] = done
    run.reporter.processed(sum(run.progress.values()))


async def follow_job(
    api: Api,
    job: str,
    on_progress: Callable[[int], None],
    on_status: Callable[[Json], None] | None = None,
) -> Json:
    """Follow a job's events until it ends; returns its final summary. `on_status` gets
    every summary the API sends (the final one too).

    A stream that breaks (the API restarting, a proxy timing out) is opened again: the
    API starts every stream with the current status, so nothing is missed.
    """
    failures = 0
    patience = asyncio.get_running_loop().time() + THROTTLED_PATIENCE_SECONDS
    while True:
        try:
            async with contextlib.aclosing(api.events(job)) as events:
                async for event in events:
                    final = handle_event(job, event, on_progress, on_status)
                    if final is not None:
                        return final
        except ApiRequestError as error:
            wait = throttled_wait(error)
            if wait is not None and asyncio.get_running_loop().time() + wait < patience:
                # The token's open streams are at its limit: wait as told, without
                # counting it a failure; a stream of this run ends soon and frees one.
                await asyncio.sleep(wait)
                continue
            if error.status not in (429, 503) or failures >= MAX_RECONNECTS:
                raise
        except CliError as error:
            if error.__cause__ is None or failures >= MAX_RECONNECTS:
                raise
        failures += 1
        await asyncio.sleep(RECONNECT_BACKOFF_SECONDS * failures)


def handle_event(
    job: str,
    event: Event,
    on_progress: Callable[[int], None],
    on_status: Callable[[Json], None] | None = None,
) -> Json | None:
    """Report progress; the final summary when the job has ended, else None."""
    if event.event in ("status", "end"):
        summary = event_json(event)
        on_progress(int(summary["succeeded"]) + int(summary["failed"]))
        if on_status is not None:
            on_status(summary)
        return summary if event.event == "end" else None
    if event.event == "deleted":
        raise CliError(f"job {job} was deleted while it ran")
    if event.event == "error":
        data = event_json(event)
        # The API could not read the job mid-stream; reconnecting is the remedy.
        raise ApiRequestError(503, str(data.get("code")), str(data.get("detail")))
    return None


def summary_document(tally: Tally) -> Json:
    """The summary for programs (`emulsion ingest --json`): the bench and the tests."""
    return {
        "found": tally.found,
        "excluded": tally.excluded,
        "already_ingested": tally.already_ingested,
        "uploaded_files": tally.uploaded_files,
        "uploaded_bytes": tally.uploaded_bytes,
        "reused_uploads": tally.reused_uploads,
        "items": tally.items,
        "succeeded": tally.succeeded,
        "failed": [{"file": f.file, "reason": f.reason} for f in tally.failures],
        "not_images": [{"file": s.relative, "reason": s.reason} for s in tally.not_images],
        "jobs": tally.jobs,
        "wall_seconds": round(tally.wall_seconds, 3),
        "upload_seconds": round(tally.upload_seconds, 3),
        "images_per_second": round(tally.images_per_second, 3),
        "upload_mb_per_second": round(tally.upload_mb_per_second, 3),
    }


def summary_rows(tally: Tally) -> Sequence[tuple[str, str]]:
    rows: list[tuple[str, Any]] = [
        ("images found", tally.found),
        ("excluded by --include/--exclude", tally.excluded),
        ("already ingested (skipped)", tally.already_ingested),
        ("uploaded", f"{tally.uploaded_files} ({tally.uploaded_bytes / 1e6:.1f} MB)"),
        ("processed in this run", tally.items),
        ("succeeded", tally.succeeded),
        ("failed", len(tally.failures)),
        ("not images (skipped)", len(tally.not_images)),
        ("wall time", f"{tally.wall_seconds:.1f} s"),
        ("images/s", f"{tally.images_per_second:.2f}"),
        ("upload MB/s", f"{tally.upload_mb_per_second:.1f}"),
    ]
    if tally.reused_uploads:
        rows.insert(3, ("uploads reused from an earlier run", tally.reused_uploads))
    if tally.jobs:
        rows.append(("jobs", ", ".join(tally.jobs)))
    return [(name, str(value)) for name, value in rows]
