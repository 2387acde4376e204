"""Pure logic between API requests and IngestJob objects: building, splitting, reading back.

No I/O here, so every rule is unit-tested without a cluster.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from emulsion_api.errors import ApiError, ErrorDetail
from emulsion_api.models import (
    AcceptedItem,
    BatchStatus,
    Failure,
    IngestAccepted,
    IngestRequest,
    ItemState,
    JobSummary,
)
from emulsion_contracts import crd, keys, wire
from emulsion_contracts.indexes import expand as indexes_of
from emulsion_contracts.ingestjob import (
    IngestJob,
    IngestJobSpec,
    IngestJobStatus,
    ItemsRef,
    JobItem,
    JobOutline,
    ObjectMeta,
)
from emulsion_contracts.jobrecords import OutcomeRecord
from emulsion_contracts.reasons import FailureReason

# The hash of (token, Idempotency-Key), so a retried request finds its jobs by label.
LABEL_IDEMPOTENCY: Final = f"{crd.GROUP}/idempotency"
# The hash of the request body the key was first used with: same key, other body -> 422.
ANNOTATION_REQUEST_HASH: Final = f"{crd.GROUP}/request-sha256"
# The identity of the token that made the job (Principal.owner): its items in flight are
# counted by this label (limits.py).
LABEL_OWNER: Final = f"{crd.GROUP}/owner"
MANAGED_BY: Final = "emulsion-api"
IDEMPOTENCY_KEY_MAX: Final = 255

# etcd refuses a write over 1.5 MiB (its default `--max-request-bytes`), and the apiserver
# then answers 500 "etcdserver: request is too large". A job no longer carries its items
# (they are an object of the object store EMULSION_INGESTS, emulsion_api.records), so the
# job itself is a frame of a few KB: still measured as the apiserver stores it, and
# refused beyond MAX_JOB_BYTES, so no apiserver refusal ever reaches a client as a 500.
ETCD_REQUEST_MAX: Final = 1_572_864
MAX_JOB_BYTES: Final = 1024 * 1024
# What the apiserver adds to an object it creates (uid, creationTimestamp, generation,
# managedFields): 381 bytes measured for the API's jobs; counted as 1 KiB.
SERVER_FIELDS_BYTES: Final = 1024
# The most a job's item list may take, as stored (its canonical JSON). The object store
# chunks any size, so this is a choice, not a store's limit: 1 MiB keeps what one job
# costs everyone who reads its whole list in one go — the controller at dispatch, the
# API's item cache, a retention's worth of lists in NATS — the same as when the items
# were in etcd, and a request over it is split into jobs exactly as before (at 2,000
# items or 1 MiB, whichever comes first). A request's size is never an outage: one item
# cannot reach this (the contract's names are far shorter), and a request is split.
MAX_ITEMS_BYTES: Final = 1024 * 1024
# `{"items":[` and `]}` around the items in the canonical body.
ITEMS_FRAME_BYTES: Final = len(b'{"items":[]}')
# Go's encoding/json (the apiserver's, for custom resources) writes these as "\u003c"
# and the like: six bytes each, where Python writes the character itself.
_GO_ESCAPED: Final = re.compile("[<>&\u2028\u2029]")
_IDEMPOTENCY_KEY_RE: Final = re.compile(rf"[\x21-\x7e]{{1,{IDEMPOTENCY_KEY_MAX}}}")
_LABEL_EDGE: Final = re.compile(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$")

Job = dict[str, Any]


@dataclass(frozen=True)
class PlannedItem:
    upload_key: str
    asset: str


def default_asset(filename: str) -> str:
    """The asset name an upload of `filename` defaults to: its base name in NFC, as the user
    wrote it (so 日本.jpg and 中国.jpg stay two assets); only a base name that is not a valid
    asset name (control characters, over 200 bytes, ...) falls back to its safe name."""
    base = unicodedata.normalize("NFC", filename.replace("\\", "/").rsplit("/", 1)[-1])
    try:
        return keys.check_asset_name(base)
    except keys.InvalidKey:
        return keys.safe_name(filename)


def check_items(request: IngestRequest, max_items: int) -> None:
    """Everything `plan_items` checks that needs no upload: run before any I/O."""
    plan_items(request, max_items, recorded=None)


def plan_items(
    request: IngestRequest, max_items: int, recorded: Mapping[str, str] | None
) -> list[PlannedItem]:
    """The request's items with assets defaulted and checked; raises ApiError (422) if bad.

    An item without `asset` gets the name recorded with its upload (`recorded`, by staging
    key); an upload with none (put into staging by other means) gets its key's file part.
    With `recorded` None (not read yet) such items are only checked, not planned.
    """
    if len(request.items) > max_items:
        raise ApiError(
            422,
            "too_many_items",
            f"{len(request.items)} items; at most {max_items} per request",
        )
    planned: list[PlannedItem] = []
    problems: list[ErrorDetail] = []
    seen: dict[str, int] = {}
    uploads: dict[str, int] = {}
    duplicates: list[ErrorDetail] = []
    for index, item in enumerate(request.items):
        try:
            # Either layout passes here; whose upload it is, is the route's question
            # (answered like a missing upload), so no answer tells a key's owner.
            keys.check_any_staging_key(item.upload_key)
        except keys.InvalidKey as error:
            problems.append(ErrorDetail(field=f"body.items.{index}", message=str(error)))
            continue
        if item.upload_key in uploads:
            # One upload, one asset per request: a repeated key would render and copy the
            # same file again and again.
            duplicates.append(
                ErrorDetail(
                    field=f"body.items.{index}.upload_key",
                    message=f"upload {item.upload_key} is also item {uploads[item.upload_key]}",
                )
            )
            continue
        uploads[item.upload_key] = index
        try:
            if item.asset is None and recorded is None:
                continue
            asset = item.asset or (recorded or {}).get(item.upload_key)
            asset = keys.check_asset_name(asset or item.upload_key.rsplit("/", 1)[-1])
        except keys.InvalidKey as error:
            problems.append(ErrorDetail(field=f"body.items.{index}", message=str(error)))
            continue
        if asset in seen:
            problems.append(
                ErrorDetail(
                    field=f"body.items.{index}.asset",
                    message=f"asset {asset!r} is also item {seen[asset]}",
                )
            )
            continue
        seen[asset] = index
        planned.append(PlannedItem(item.upload_key, asset))
    if duplicates and not problems:
        raise ApiError(
            422,
            "duplicate_upload",
            f"an upload may appear once per request; repeated at items "
            f"{', '.join(d.field.split('.')[2] for d in duplicates if d.field)}",
            duplicates,
        )
    problems += duplicates
    if problems:
        duplicate = all("is also item" in problem.message for problem in problems)
        asset_only = all(p.field and p.field.endswith(".asset") for p in problems)
        raise ApiError(
            422,
            "duplicate_asset" if duplicate and asset_only else "invalid_request",
            "an asset may appear once per request"
            if duplicate and asset_only
            else "some items are invalid",
            problems,
        )
    try:
        keys.check_collection(request.collection)
    except keys.InvalidKey as error:
        raise ApiError(422, "invalid_request", str(error)) from None
    return planned


def check_idempotency_key(value: str) -> str:
    if not _IDEMPOTENCY_KEY_RE.fullmatch(value):
        raise ApiError(
            422,
            "invalid_idempotency_key",
            f"Idempotency-Key must be 1-{IDEMPOTENCY_KEY_MAX} printable ASCII characters",
        )
    return value


def idempotency_label(principal: str, key: str) -> str:
    """40 hex characters (a valid label value) naming (caller, key); no token is stored."""
    return hashlib.blake2b(f"{principal}\0{key}".encode(), digest_size=20).hexdigest()


def request_hash(request: IngestRequest) -> str:
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def collection_label(collection: str) -> str:
    """A collection as a label value: names may end in '.', '_' or '-', label values may not."""
    return _LABEL_EDGE.sub("", collection)[:63]


def job_name(version: str) -> str:
    """The job's name is its version ULID in lower case: unique, DNS-safe, time-ordered."""
    return version.lower()


def part_count(items: list[PlannedItem]) -> int:
    """How many IngestJobs a request of `items` becomes (`split_items`)."""
    return max(1, len(split_items(items)))


@dataclass(frozen=True)
class JobPlan:
    namespace: str
    collection: str
    profile: str
    items: list[PlannedItem]
    trace_headers: Mapping[str, str]
    idempotency: tuple[str, str, str] | None = None  # (label, client key, request hash)
    ttl_seconds_after_finished: int | None = None
    owner: str | None = None  # the token's identity, labelled for its items in flight
    priority: wire.Lane | None = None  # the lane asked for (spec.priority)
    retry_of: str | None = None  # the job a retry re-runs the failed items of


def stored_json_size(value: Any) -> int:
    """Bytes of `value` as the apiserver stores a custom resource in etcd: compact JSON
    from Go's encoding/json, which escapes '<', '>', '&', U+2028 and U+2029 as six bytes
    and keeps other non-ASCII characters as UTF-8. Never below the real size: control
    characters Python writes as "\\b" or "\\f" are counted as six bytes (older Go)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    shorthand = text.count("\\b") + text.count("\\f")
    escaped = sum(6 - len(char.encode("utf-8")) for char in _GO_ESCAPED.findall(text))
    return len(text.encode("utf-8")) + escaped + 4 * shorthand


def stored_size(job: Job) -> int:
    """The bytes `job` takes in etcd once the apiserver created it (never fewer)."""
    return stored_json_size(job) + SERVER_FIELDS_BYTES


def item_bytes(item: PlannedItem) -> int:
    """What one item adds to its job's item list as stored (jobrecords.encode_items): its
    JSON object, UTF-8 kept as is, and a comma. Never below the real size: Python escapes
    a control character as six bytes where pydantic may write two."""
    # Written out: validating a model per item would cost more than this.
    value = {"source": item.upload_key, "asset": item.asset}
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return len(text.encode("utf-8")) + 1


def split_items(items: list[PlannedItem]) -> list[list[PlannedItem]]:
    """The items in order, cut into jobs of at most `crd.MAX_ITEMS` items and
    `MAX_ITEMS_BYTES` of item list as stored."""
    chunks: list[list[PlannedItem]] = []
    current: list[PlannedItem] = []
    used = ITEMS_FRAME_BYTES
    for item in items:
        size = item_bytes(item)
        if size + ITEMS_FRAME_BYTES > MAX_ITEMS_BYTES:  # no name the contract accepts is this long
            raise too_large(size + ITEMS_FRAME_BYTES)
        if current and (len(current) == crd.MAX_ITEMS or used + size > MAX_ITEMS_BYTES):
            chunks.append(current)
            current, used = [], ITEMS_FRAME_BYTES
        current.append(item)
        used += size
    if current:
        chunks.append(current)
    return chunks


def too_large(size: int) -> ApiError:
    return ApiError(
        413,
        "job_too_large",
        f"the request makes an IngestJob (or its item list) of {size:,} bytes as stored; "
        f"the limit is {MAX_JOB_BYTES:,} bytes",
        [ErrorDetail(field="body.items", message=f"limit: {MAX_JOB_BYTES} bytes per job")],
    )


@dataclass(frozen=True)
class Part:
    """One IngestJob of a request: its name, version and items (stored before the job)."""

    name: str
    version: str
    items: tuple[JobItem, ...]


def plan_parts(plan: JobPlan, part_versions: Sequence[str]) -> list[Part]:
    """The request's jobs: one per `crd.MAX_ITEMS` items or `MAX_ITEMS_BYTES` of item
    list as stored, whichever comes first; nothing is sent before every part fits, so a
    request's size is a 413 here, never an error of a store.

    `part_versions`: one version per part (`part_count`), in order, minted from the
    shared clock (emulsion_runtime.clock), never from this replica's own.
    """
    chunks = split_items(plan.items)
    if len(part_versions) != len(chunks):
        raise ValueError(f"{len(chunks)} parts need as many versions, not {len(part_versions)}")
    return [
        Part(
            name=job_name(version),
            version=version,
            items=tuple(JobItem(source=i.upload_key, asset=i.asset) for i in chunk),
        )
        for version, chunk in zip(part_versions, chunks, strict=True)
    ]


def build_jobs(plan: JobPlan, parts: Sequence[Part], refs: Sequence[ItemsRef]) -> list[Job]:
    """The IngestJobs of `parts`, each naming its stored item list (`refs`, in order);
    a split request's parts share one batch label. Each is measured as the apiserver will
    store it before anything is sent: etcd's refusal would be a 500 the client retries."""
    if len(refs) != len(parts):
        raise ValueError(f"{len(parts)} parts need as many item lists, not {len(refs)}")
    batch = parts[0].name if len(parts) > 1 else None
    labels = {
        crd.LABEL_MANAGED_BY: MANAGED_BY,
        crd.LABEL_COLLECTION: collection_label(plan.collection),
    }
    annotations: dict[str, str] = {}
    if plan.owner:
        labels[LABEL_OWNER] = plan.owner
        # The tenant whose share of the processors the job's work counts against.
        labels[crd.LABEL_TENANT] = plan.owner
    if batch:
        labels[crd.LABEL_BATCH] = batch
    if plan.retry_of:
        labels[crd.LABEL_RETRY_OF] = plan.retry_of
    # The trace's parent only, and the idempotency key by its hash only (the label): a
    # W3C tracestate (up to 512 bytes) and a client's key (up to 255 characters, six bytes
    # each for '<', '>' and '&' in etcd) would take more than the whole status may, and
    # the job must stay within 4 KB (a small IngestJob; tests/services/controller/
    # test_bounded_status.py).
    if "traceparent" in plan.trace_headers:
        annotations[crd.ANNOTATION_TRACEPARENT] = plan.trace_headers["traceparent"]
    if plan.idempotency:
        label, _, body_hash = plan.idempotency
        labels[LABEL_IDEMPOTENCY] = label
        annotations[ANNOTATION_REQUEST_HASH] = body_hash
    bodies = [
        IngestJob(
            metadata=ObjectMeta(
                name=part.name,
                namespace=plan.namespace,
                labels=labels,
                annotations=annotations,
                # The controller's finalizer from the start: kopf would otherwise add it
                # with a write of its own, which the controller then watches come back
                # (5.25 -> 4.25 apiserver writes per one-item job, in the audit log).
                finalizers=(crd.FINALIZER,),
            ),
            spec=IngestJobSpec(
                collection=plan.collection,
                profile=plan.profile,
                version=part.version,
                items_ref=ref,
                ttl_seconds_after_finished=plan.ttl_seconds_after_finished,
                priority=plan.priority,
            ),
        ).to_body()
        for part, ref in zip(parts, refs, strict=True)
    ]
    for body in bodies:
        size = stored_size(body)
        if size > MAX_JOB_BYTES:  # a frame of a few KB: never with today's fields
            raise too_large(size)
    return bodies


def ingest_url(name: str) -> str:
    return f"/v1/ingests/{name}"


def batch_url(batch: str) -> str:
    return f"/v1/batches/{batch}"


def batch_of(job: Job) -> str | None:
    labels: dict[str, str] = job["metadata"].get("labels") or {}
    return labels.get(crd.LABEL_BATCH)


def request_id(job: Job) -> str:
    """What one request made: its batch, or its one job."""
    return batch_of(job) or str(job["metadata"]["name"])


def accepted(jobs: Sequence[tuple[Job, Sequence[JobItem]]]) -> IngestAccepted:
    """The 202 body for the jobs one request made (in part order), each with its items;
    a replay gives the same."""
    ordered = sorted(
        ((IngestJob.read(job), items) for job, items in jobs), key=lambda j: _version_order(j[0])
    )
    batch = ordered[0][0].metadata.labels.get(crd.LABEL_BATCH)
    accepted_items: list[AcceptedItem] = []
    for job, job_items in ordered:
        for job_index, item in enumerate(job_items):
            accepted_items.append(
                AcceptedItem(
                    index=len(accepted_items),
                    job=job.metadata.name,
                    job_index=job_index,
                    upload_key=item.source,
                    asset=item.asset,
                )
            )
    name = batch or ordered[0][0].metadata.name
    return IngestAccepted(
        name=name,
        status_url=batch_url(name) if batch else ingest_url(name),
        batch=batch,
        jobs=[job.metadata.name for job, _ in ordered],
        items=accepted_items,
    )


def accepted_share(name: str, items: Sequence[PlannedItem], offset: int) -> IngestAccepted:
    """The 202 body for one request of a group commit: its `items`, from `offset` in the
    job `name` they share with other requests."""
    shown = [
        AcceptedItem(
            index=index,
            job=name,
            job_index=offset + index,
            upload_key=item.upload_key,
            asset=item.asset,
        )
        for index, item in enumerate(items)
    ]
    return IngestAccepted(
        name=name, status_url=ingest_url(name), batch=None, jobs=[name], items=shown
    )


def _version_order(job: IngestJob) -> str:
    return job.version or ""


def group_by_request(jobs: Iterable[Job]) -> dict[str, list[Job]]:
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        groups.setdefault(request_id(job), []).append(job)
    return groups


def first_request(jobs: Iterable[Job]) -> list[Job]:
    """Of several requests racing with one Idempotency-Key, the earliest (lowest version) wins."""
    groups = group_by_request(jobs)
    return min(groups.values(), key=lambda group: min(job_version(j) or "" for j in group))


def stored_request_hash(jobs: list[Job]) -> str | None:
    annotations = jobs[0]["metadata"].get("annotations") or {}
    value = annotations.get(ANNOTATION_REQUEST_HASH)
    return str(value) if value else None


# -- reading status ---------------------------------------------------------------------


def phase(job: Job) -> crd.Phase:
    return IngestJobStatus.of(job).phase


def job_version(job: Job) -> str | None:
    """The version id in effect: the spec's, or the one the controller picked."""
    return JobOutline.read(job).version


def summary(job: Job) -> JobSummary:
    return job_summary(IngestJob.read(job))


def job_summary(job: IngestJob) -> JobSummary:
    status = job.status
    total = status.total or job.spec.count
    succeeded, failed = status.succeeded or 0, status.failed or 0
    return JobSummary(
        name=job.metadata.name,
        status_url=ingest_url(job.metadata.name),
        collection=job.spec.collection,
        profile=job.spec.profile,
        batch=job.metadata.labels.get(crd.LABEL_BATCH),
        phase=status.phase,
        finished=status.phase.finished,
        total=total,
        succeeded=succeeded,
        failed=failed,
        progress=status.progress or f"{succeeded + failed}/{total}",
        version=job.version,
        created_at=job.metadata.creation_timestamp,
        started_at=status.started_at,
        completed_at=status.completed_at,
        duration=status.duration,
        failures=[
            Failure(index=f.index, asset=f.asset, reason=f.reason, message=f.message)
            for f in status.failures
        ],
        cancelled_at=cancelled_at(job),
        cancelled=reason_count(status, FailureReason.CANCELLED),
        retry_of=job.metadata.labels.get(crd.LABEL_RETRY_OF),
    )


def cancelled_at(job: IngestJob) -> datetime | None:
    """When a cancel was asked for (its annotation); None if never (or unreadable)."""
    value = job.metadata.annotations.get(crd.ANNOTATION_CANCELLED)
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def reason_count(status: IngestJobStatus, reason: FailureReason) -> int:
    """Items that failed with `reason`, from the counts per reason."""
    return sum(c.count for c in status.failure_reasons if FailureReason.parse(c.reason) is reason)


@dataclass(frozen=True)
class ItemStates:
    succeeded: set[int]
    failed: set[int]
    reasons: dict[int, FailureReason]

    def state(self, index: int) -> ItemState:
        if index in self.succeeded:
            return "succeeded"
        if index in self.failed:
            return "failed"
        return "pending"


def item_states(status: IngestJobStatus) -> ItemStates:
    try:
        succeeded, failed = status.succeeded_set(), status.failed_set()
    except ValueError:
        # A malformed range list is the writer's bug; show the items as pending, not a 500.
        succeeded, failed = set(), set()
    # Every failed item's reason, from the counts per reason (their index ranges); the
    # listed examples fill in for a status written before those existed.
    reasons: dict[int, FailureReason] = {f.index: f.reason for f in status.failures}
    for counted in status.failure_reasons:
        try:
            found = counted.index_set()
        except ValueError:
            continue
        reason = FailureReason.parse(counted.reason)
        for index in found & failed:
            reasons[index] = reason
    return ItemStates(succeeded, failed, reasons)


def outcome_states(record: OutcomeRecord) -> ItemStates:
    """Every finished item's state and reason, from the job's outcomes record."""
    try:
        succeeded, failed = record.succeeded_set(), record.failed_set()
    except ValueError:
        # A malformed range list is the writer's bug; show the items as pending, not a 500.
        return ItemStates(set(), set(), {})
    reasons: dict[int, FailureReason] = {}
    for reason, found in record.reasons.items():
        try:
            indexes = indexes_of(found)
        except ValueError:
            continue
        parsed = FailureReason.parse(reason)
        for index in indexes & failed:
            reasons[index] = parsed
    return ItemStates(succeeded, failed, reasons)


def batch_status(batch: str, jobs: list[Job]) -> BatchStatus:
    summaries = [job_summary(job) for job in sorted(map(IngestJob.read, jobs), key=_version_order)]
    total = sum(s.total for s in summaries)
    succeeded = sum(s.succeeded for s in summaries)
    failed = sum(s.failed for s in summaries)
    return BatchStatus(
        batch=batch,
        status_url=batch_url(batch),
        phase=batch_phase([s.phase for s in summaries]),
        finished=all(s.finished for s in summaries),
        total=total,
        succeeded=succeeded,
        failed=failed,
        progress=f"{succeeded + failed}/{total}",
        jobs=summaries,
    )


_RUNNING_ORDER: Final = (crd.Phase.PROCESSING, crd.Phase.QUEUED, crd.Phase.PENDING)


def batch_phase(phases: list[crd.Phase]) -> crd.Phase:
    """A batch runs while any part runs; once all ended, it failed, succeeded or partly."""
    for running in _RUNNING_ORDER:
        if running in phases:
            return running
    if all(p is crd.Phase.SUCCEEDED for p in phases):
        return crd.Phase.SUCCEEDED
    if all(p is crd.Phase.FAILED for p in phases):
        return crd.Phase.FAILED
    return crd.Phase.PARTIALLY_FAILED
