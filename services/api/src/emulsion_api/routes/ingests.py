"""`/v1/ingests`: turn uploaded keys into IngestJobs (202), and report their progress."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Response, status
from fastapi.sse import EventSourceResponse, ServerSentEvent

from emulsion_api import commits, expired, jobs, reads, views
from emulsion_api.apiserver import Kube
from emulsion_api.deps import FollowingDep, Principal, PrincipalDep, Services, ServicesDep
from emulsion_api.errors import JOB_READ_PROBLEMS, ApiError, ErrorDetail, problems
from emulsion_api.models import (
    ExpiredIngestProblem,
    Failure,
    FailurePage,
    IngestAccepted,
    IngestCancel,
    IngestList,
    IngestRequest,
    IngestStatus,
    JobDeletedEvent,
    JobSummary,
    RetryAccepted,
    RetryItem,
    RetryRequest,
    RetrySkipped,
    StreamErrorEvent,
)
from emulsion_contracts import crd, keys, wire
from emulsion_contracts.ingestjob import IngestJob, JobOutline
from emulsion_contracts.jobrecords import FailureDetail
from emulsion_contracts.reasons import FailureReason
from emulsion_runtime import telemetry

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/ingests", tags=["ingests"])

# Kubernetes object names (DNS subdomains).
JOB_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
JobName = Annotated[
    str,
    Path(
        pattern=JOB_NAME_PATTERN,
        max_length=253,
        description="The IngestJob's name (from `POST /v1/ingests`).",
        examples=["01jdq3g2m4p8r6t0v2x4z6b8d0"],
    ),
]
# How long an event stream's watch runs before a keep-alive comment and a fresh read.
KEEPALIVE_SECONDS = 15.0
# A watch shorter than this is not worth opening; the server's watch timeout is whole seconds.
MIN_WATCH_SECONDS = 0.5


_not_found = expired.not_found


async def _job_or_gone(
    services: Services, name: str, caller: Principal, offset: int = 0, limit: int = 100
) -> jobs.Job:
    """The job, if it exists and its collection is the caller's to see; 410 with what is
    still known if its TTL removed it (and the caller may see it); else 404."""
    job = await services.kube.get(name)
    if job is None:
        gone = await expired.gone_job(services, name, caller)
        raise await expired.expired(services, gone, offset, limit)
    if not caller.may_read(str(job["spec"]["collection"])):
        raise _not_found(name)
    return job


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=IngestAccepted,
    operation_id="createIngest",
    responses={
        202: {
            "description": "Accepted; `Location` is the status URL",
            "headers": {
                "Location": {
                    "description": "The status URL (`status_url`).",
                    "schema": {
                        "type": "string",
                        "example": "/v1/ingests/01jdq3g2m4p8r6t0v2x4z6b8d0",
                    },
                },
                "Idempotent-Replayed": {
                    "description": (
                        "`true` when the Idempotency-Key was seen before and this is the "
                        "first request's answer; absent otherwise."
                    ),
                    "schema": {"type": "string", "enum": ["true"]},
                },
            },
        },
        **problems(
            "unauthorized",
            "forbidden",
            "priority_not_allowed",
            "malformed_json",
            "body_too_large",
            "job_too_large",
            "invalid_request",
            "too_many_items",
            "duplicate_asset",
            "duplicate_upload",
            "unknown_profile",
            "invalid_idempotency_key",
            "idempotency_key_reused",
            "upload_missing",
            "overloaded",
            "rate_limited",
            "unavailable",
            "internal",
        ),
    },
)
async def create_ingest(
    body: IngestRequest,
    response: Response,
    services: ServicesDep,
    caller: PrincipalDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=jobs.IDEMPOTENCY_KEY_MAX,
            description="Retrying with the same key returns the same job(s) instead of new ones",
        ),
    ] = None,
) -> IngestAccepted:
    """Validate the items, create one IngestJob (or a batch of them) and return at once.

    Never touches image bytes: the uploads are only checked to exist and be unclaimed (a
    HEAD each for a few, a listing of their key range for many; a large request in a range
    crowded with other uploads is not checked, and a missing upload fails its item with
    `SourceMissing`). Only uploads presigned for this collection are accepted: any other
    key (another collection's, or of the old layout) is answered exactly like a missing
    upload, without being read, so an answer never tells whether someone else's exists.
    An upload key may appear once per request (`duplicate_upload` names the repeats); one
    a job already promoted is answered like a missing upload too.

    Small requests without an `Idempotency-Key` that arrive while a create for the same
    token, collection, profile and priority is in flight share the next create (group commit): the
    answer lists this request's items only, each with the shared job and its `job_index`,
    and the job's status counts the items of every request in it.
    """
    settings = services.settings
    caller.check_write(body.collection)
    if body.priority is wire.Lane.INTERACTIVE and not caller.limits.interactive:
        # Only after the collection's check: a token learns this of its own collections only.
        raise ApiError(
            403,
            "priority_not_allowed",
            "this token may not ask for priority interactive (its limits do not allow it); "
            "leave priority out, or ask for bulk",
            [ErrorDetail(field="body.priority", message="interactive is not allowed")],
        )
    services.limiter.notifies(caller.owner, caller.limits)
    jobs.check_items(body, settings.max_request_items)
    if body.profile not in services.profiles:
        raise ApiError(
            422,
            "unknown_profile",
            f"unknown profile {body.profile!r}; known: {', '.join(sorted(services.profiles))}",
        )
    idempotency: tuple[str, str, str] | None = None
    if idempotency_key is not None:
        label = jobs.idempotency_label(caller.id, jobs.check_idempotency_key(idempotency_key))
        idempotency = (label, idempotency_key, jobs.request_hash(body))
        existing = await services.kube.list(f"{jobs.LABEL_IDEMPOTENCY}={label}")
        if existing:
            return await _replay(services, jobs.first_request(existing), idempotency[2], response)
    missing = await _missing_uploads(services, caller, body)
    if missing:
        raise ApiError(
            422,
            "upload_missing",
            f"{len(missing)} upload(s) not found in the staging area",
            [ErrorDetail(field="body.items", message=f"{key} was not uploaded") for key in missing],
        )
    unnamed = [item.upload_key for item in body.items if item.asset is None]
    recorded = await services.store.recorded_assets(unnamed) if unnamed else {}
    planned = jobs.plan_items(body, settings.max_request_items, recorded)
    plan = jobs.JobPlan(
        namespace=services.kube.namespace,
        collection=body.collection,
        profile=body.profile,
        items=planned,
        trace_headers=telemetry.inject(),
        idempotency=idempotency,
        ttl_seconds_after_finished=settings.ttl_seconds_after_finished,
        owner=caller.owner,
        priority=body.priority,
    )
    await services.limiter.admit_jobs(services.kube, caller.owner, caller.limits, len(planned))
    if idempotency is None and len(planned) <= commits.MAX_GROUPED_REQUEST_ITEMS:
        job, offset = await services.commits.submit(
            (caller.id, body.collection, body.profile, body.priority),
            planned,
            plan.trace_headers,
            functools.partial(_create_group, services, plan),
        )
        result = jobs.accepted_share(str(job["metadata"]["name"]), planned, offset)
        response.headers["Location"] = result.status_url
        return result
    # Minted right before the jobs are made: each version follows every version (and
    # tombstone) minted before, whichever replica minted it (emulsion_runtime.clock).
    versions = await services.bus.mint_versions(jobs.part_count(planned))
    parts = jobs.plan_parts(plan, versions)
    created = await _create_all(services, plan, parts)
    if idempotency is not None:
        winner = await _settle_race(
            services.kube, f"{jobs.LABEL_IDEMPOTENCY}={idempotency[0]}", created
        )
        if winner is not created:
            return await _replay(services, winner, idempotency[2], response)
    result = jobs.accepted([(job, part.items) for job, part in zip(created, parts, strict=True)])
    response.headers["Location"] = result.status_url
    return result


async def _missing_uploads(
    services: ServicesDep, caller: Principal, body: IngestRequest
) -> list[str]:
    """The request's upload keys it may not ingest, in request order: those not presigned
    for its collection (never looked up) and those missing or claimed in the store."""
    wanted = [item.upload_key for item in body.items]
    own = [key for key in wanted if caller.may_use_upload(key, body.collection)]
    gone = set(await services.store.missing(own)) if own else set()
    mine = set(own)
    return [key for key in wanted if key not in mine or key in gone]


async def _create_group(
    services: Services,
    plan: jobs.JobPlan,
    items: list[jobs.PlannedItem],
    trace: Mapping[str, str],
) -> jobs.Job:
    """One job for a group's items (the group commit keeps them within one job)."""
    group = dataclasses.replace(plan, items=items, trace_headers=trace)
    [job] = await _create_all(
        services, group, jobs.plan_parts(group, await services.bus.mint_versions(1))
    )
    return job


async def _replay(
    services: Services, existing: list[jobs.Job], body_hash: str, response: Response
) -> IngestAccepted:
    if jobs.stored_request_hash(existing) != body_hash:
        raise ApiError(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request body",
        )
    parsed = [IngestJob.read(job) for job in existing]
    listed = await asyncio.gather(*(services.records.items(job) for job in parsed))
    result = jobs.accepted(
        [(job, items or ()) for job, items in zip(existing, listed, strict=True)]
    )
    response.headers["Location"] = result.status_url
    response.headers["Idempotent-Replayed"] = "true"
    return result


async def _create_all(
    services: Services, plan: jobs.JobPlan, parts: list[jobs.Part]
) -> list[jobs.Job]:
    """Store every part's item list, then create every part, or none: a part that fails
    takes the others back. The lists go first so a job never names a list that is not
    there; a list whose job was never made names no job and expires with the records."""
    refs = await asyncio.gather(
        *(services.records.put_items(part.name, part.items) for part in parts)
    )
    kube = services.kube
    bodies = jobs.build_jobs(plan, parts, refs)
    results = await asyncio.gather(*(kube.create(body) for body in bodies), return_exceptions=True)
    created = [result for result in results if isinstance(result, dict)]
    failure = next((r for r in results if isinstance(r, BaseException)), None)
    if failure is None:
        return created
    await asyncio.gather(
        *(kube.delete(job["metadata"]["name"]) for job in created), return_exceptions=True
    )
    raise failure


async def _settle_race(kube: Kube, selector: str, created: list[jobs.Job]) -> list[jobs.Job]:
    """Two requests with one Idempotency-Key (or two retries of one job, `selector` saying
    which) may both have found nothing and created jobs; the earliest wins, the others
    delete what they made and answer with the winner's."""
    everything = await kube.list(selector)
    ours = jobs.request_id(created[0])
    winner = jobs.first_request(everything) if everything else created
    if jobs.request_id(winner[0]) == ours:
        return created
    log.info("idempotent request lost a race; deleting %s", ours)
    await asyncio.gather(*(kube.delete(job["metadata"]["name"]) for job in created))
    return winner


@router.get(
    "",
    response_model=IngestList,
    operation_id="listIngests",
    responses=problems(
        "unauthorized",
        "not_found",
        "invalid_request",
        "invalid_cursor",
        "overloaded",
        "unavailable",
        "internal",
    ),
)
async def list_ingests(
    services: ServicesDep,
    caller: PrincipalDep,
    collection: Annotated[
        str | None,
        Query(
            pattern=f"^{keys.COLLECTION_PATTERN}$",
            max_length=keys.COLLECTION_MAX,
            description="Only this collection's jobs (404 outside the token's scopes).",
        ),
    ] = None,
    # Each entry is a job's summary (its items are not read), so pages cost the apiserver
    # little; the bound keeps a page's answer small all the same.
    limit: Annotated[int, Query(ge=1, le=100, description="Most jobs per page.")] = 20,
    cursor: Annotated[
        str | None,
        Query(
            max_length=4096,
            description="`next_cursor` of the previous page; none for the first page.",
        ),
    ] = None,
) -> IngestList:
    """A page of IngestJob summaries, oldest first (the apiserver's order), of one
    collection or of every collection the token may see."""
    selector = ""
    if collection is not None:
        if not caller.may_read(collection):
            raise ApiError(404, "not_found", f"no collection {collection!r}")
        selector = f"{crd.LABEL_COLLECTION}={jobs.collection_label(collection)}"

    def shown(job: jobs.Job) -> JobSummary | None:
        # The label is the collection cut to a label value; the spec says which it is.
        found = str(job["spec"]["collection"])
        if not caller.may_read(found) or (collection is not None and found != collection):
            return None
        return jobs.summary(job)

    # Read a few jobs at a time (reads.py): memory follows the summaries returned.
    items, next_cursor = await reads.page_of(
        services.kube.list_page, selector, limit, cursor, shown
    )
    return IngestList(items=items, next_cursor=next_cursor)


# A job's status, read once or followed (a long poll's `wait`, or its event stream); a
# job its TTL removed answers 410 with what is still known.
FOLLOWING_PROBLEMS = problems(
    "unauthorized",
    "not_found",
    "ingest_expired",
    "invalid_request",
    "overloaded",
    "too_many_watches",
    "rate_limited",
    "unavailable",
    "internal",
    models={410: ExpiredIngestProblem},
    examples={
        410: {
            "type": "urn:emulsion:problem:ingest_expired",
            "title": "The ingest finished and expired; what is still known",
            "status": 410,
            "detail": "ingest '01jdq3g2m4p8r6t0v2x4z6b8d0' finished PartiallyFailed and expired: "
            "it is no longer in the cluster; what is still known is in `ingest`, every "
            "failure at /v1/ingests/01jdq3g2m4p8r6t0v2x4z6b8d0/failures",
            "instance": "/v1/ingests/01jdq3g2m4p8r6t0v2x4z6b8d0",
            "code": "ingest_expired",
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "errors": [],
            "ingest": {
                "name": "01jdq3g2m4p8r6t0v2x4z6b8d0",
                "collection": "holiday-2026",
                "phase": "PartiallyFailed",
                "total": 3,
                "succeeded": 2,
                "failed": 1,
                "version": "01JDQ3G2M4P8R6T0V2X4Z6B8D0",
                "started_at": "2026-11-23T10:15:30Z",
                "completed_at": "2026-11-23T10:15:42Z",
                "reasons": {"NotAnImage": 1},
                "failures_url": "/v1/ingests/01jdq3g2m4p8r6t0v2x4z6b8d0/failures",
                "assets_total": 2,
                "asset_offset": 0,
                "assets": [
                    {"index": 0, "asset": "IMG_0001.jpg"},
                    {"index": 2, "asset": "IMG_0003.jpg"},
                ],
            },
        }
    },
)


@router.get(
    "/{name}",
    response_model=IngestStatus,
    operation_id="getIngest",
    responses=FOLLOWING_PROBLEMS,
)
async def get_ingest(
    name: JobName,
    services: ServicesDep,
    caller: PrincipalDep,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=3600,
            description="Seconds to wait for the status to change (capped by the server)",
        ),
    ] = 0,
    item_offset: Annotated[
        int, Query(ge=0, le=100_000, description="Position of the first item to show")
    ] = 0,
    item_limit: Annotated[int, Query(ge=0, le=2000, description="Most items to show")] = 100,
    urls: Annotated[
        bool,
        Query(
            description=(
                "Whether succeeded items carry `live`, their `original` and `outputs` with "
                "download URLs. `false` answers each item's state, version and reason "
                "alone, without reading the assets (`live` null, no `original`, `outputs` "
                "empty): the cheap page for a client that wants outcomes, not files."
            )
        ),
    ] = True,
) -> IngestStatus:
    """Phase, counts, failures and a page of items with the URLs of what they made
    (or, with `urls=false`, their states and versions alone).

    With `wait`, answers as soon as the job's status changes (a watch on the apiserver),
    or after `wait` seconds with the status unchanged.

    A finished job is removed from the cluster `ttlSecondsAfterFinished` after it ended
    (one hour by default). Then, while its records are kept (7 days by default), this
    answers **410 `ingest_expired`** with its summary and a page of the assets it made
    (`item_offset`, `item_limit` page them); after that, 404 like any unknown name.
    """
    job = await _job_or_gone(services, name, caller, item_offset, item_limit)
    if wait > 0 and not jobs.phase(job).finished:
        with services.limiter.following(caller.owner, caller.limits):
            job = await _status_change(
                services, caller, job, min(wait, services.settings.max_wait_seconds)
            )
    return await views.ingest_status(services, job, item_offset, item_limit, urls=urls)


async def _status_change(
    services: Services, caller: Principal, job: jobs.Job, seconds: float
) -> jobs.Job:
    kube = services.kube
    deadline = time.monotonic() + seconds
    initial = job.get("status")
    current = job
    while (remaining := deadline - time.monotonic()) >= MIN_WATCH_SECONDS:
        change = await kube.next_change(current, remaining)
        if change is None:
            current = await _job_or_gone(services, job["metadata"]["name"], caller)
        elif change.kind == "deleted":
            # Gone while watched: a TTL's deletion answers 410 like a later read.
            await _job_or_gone(services, job["metadata"]["name"], caller)
            raise _not_found(job["metadata"]["name"])
        else:
            current = change.job
        if current.get("status") != initial:
            break
    return current


async def _followed_job(name: JobName, services: ServicesDep, caller: PrincipalDep) -> jobs.Job:
    # A dependency, so a missing job is a 404 before the event stream starts.
    return await _job_or_gone(services, name, caller)


@router.get(
    "/{name}/events",
    response_class=EventSourceResponse,
    operation_id="followIngest",
    responses={
        200: {
            "description": (
                "Server-sent events: `status` (a JobSummary) on every change, then `end` "
                "(the final JobSummary) when the job has finished, or `deleted` "
                "(JobDeletedEvent) / `error` (StreamErrorEvent); each event's `id` is the "
                "job's resourceVersion."
            ),
        },
        **FOLLOWING_PROBLEMS,
    },
)
async def ingest_events(
    services: ServicesDep,
    job: Annotated[jobs.Job, Depends(_followed_job)],
    _following: FollowingDep,
) -> AsyncIterator[ServerSentEvent]:
    """The job's status as server-sent events, until the job ends."""
    name = job["metadata"]["name"]
    current: jobs.Job = job
    sent: Any = object()
    try:
        while True:
            summary = jobs.summary(current)
            version = str(current["metadata"].get("resourceVersion") or "") or None
            if summary.finished:
                yield ServerSentEvent(event="end", data=summary, id=version)
                return
            if current.get("status") != sent:
                sent = current.get("status")
                yield ServerSentEvent(event="status", data=summary, id=version)
            # FastAPI sends a keep-alive comment while this waits.
            change = await services.kube.next_change(current, KEEPALIVE_SECONDS)
            if change is None:
                fresh = await services.kube.get(name)
                if fresh is None:
                    yield ServerSentEvent(event="deleted", data=JobDeletedEvent(name=name))
                    return
                current = fresh
            elif change.kind == "deleted":
                yield ServerSentEvent(event="deleted", data=JobDeletedEvent(name=name))
                return
            else:
                current = change.job
    except ApiError as error:
        # The response has started; the failure can only be told as an event.
        yield ServerSentEvent(
            event="error", data=StreamErrorEvent(code=error.code, detail=error.message)
        )


FailureCursor = Annotated[
    str | None,
    Query(
        pattern=r"^[0-9]{1,7}$",
        description="`next_cursor` of the previous page (the last index it showed); none "
        "for the first page.",
        examples=["41"],
    ),
]


@router.get(
    "/{name}/failures",
    response_model=FailurePage,
    operation_id="listIngestFailures",
    responses={
        200: {
            "description": "A page of failed items, in index order",
            "content": {
                "application/json": {
                    "example": {
                        "name": "01jdq3g2m4p8r6t0v2x4z6b8d0",
                        "items": [
                            {
                                "index": 3,
                                "asset": "IMG_0004.jpg",
                                "reason": "NotAnImage",
                                "message": "cannot identify image file",
                            },
                            {
                                "index": 17,
                                "asset": "scan <draft>.tif",
                                "reason": "TooLarge",
                                "message": "121 megapixels; the limit is 100",
                            },
                        ],
                        "next_cursor": "17",
                    }
                }
            },
        },
        **problems(*JOB_READ_PROBLEMS),
    },
)
async def ingest_failures(
    name: JobName,
    services: ServicesDep,
    caller: PrincipalDep,
    cursor: FailureCursor = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Most failures per page.")] = 100,
) -> FailurePage:
    """Every failed item of an ingest, a page at a time, in index order: its asset
    (exactly as named), its reason and the whole message (up to 1,024 characters; the
    status lists only the first few, shortened, as `kubectl describe` does).

    Served from the job's records, so also for a job its TTL removed (while the records
    are kept, 7 days by default). A name the token may not see is a 404, as unknown.
    """
    after = int(cursor) if cursor is not None else -1
    job = await services.kube.get(name)
    uid: str | None
    if job is None:
        gone = await expired.gone_job(services, name, caller)
        uid = gone.uid
        if uid is None:
            outcomes = await services.records.last_outcomes(name)
            uid = outcomes.uid if outcomes else None
        examples: tuple[Failure, ...] = ()
    else:
        if not caller.may_read(str(job["spec"]["collection"])):
            raise _not_found(name)
        outline = JobOutline.read(job)
        uid = outline.metadata.uid
        examples = tuple(
            Failure(index=f.index, asset=f.asset, reason=f.reason, message=f.message)
            for f in outline.status.failures
            if f.index > after
        )
    if uid is None:
        return FailurePage(name=name, items=[])
    found, next_index = await services.records.failures(name, uid, after, limit)
    if not found and after < 0 and examples:
        # A job from before the records: the examples its status kept are all there is.
        return FailurePage(name=name, items=list(examples[:limit]))
    return FailurePage(
        name=name,
        items=[Failure.of(detail) for detail in found],
        next_cursor=None if next_index is None else str(next_index),
    )


CANCEL_EXAMPLE = {
    "name": "01jdq3g2m4p8r6t0v2x4z6b8d0",
    "status_url": "/v1/ingests/01jdq3g2m4p8r6t0v2x4z6b8d0",
    "cancelled_at": "2026-11-23T10:15:35Z",
    "phase": "Processing",
    "finished": False,
    "total": 120,
    "succeeded": 80,
    "failed": 1,
    "cancelled": 0,
    "stopping": 39,
}


@router.delete(
    "/{name}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=IngestCancel,
    operation_id="cancelIngest",
    responses={
        202: {
            "description": (
                "The cancel is under way: `stopping` items end Cancelled (one a processor "
                "was committing ends succeeded); follow the job's status until `finished`."
            ),
            "content": {"application/json": {"example": CANCEL_EXAMPLE}},
        },
        200: {
            "description": (
                "The job has finished (cancelled earlier, or ended before any cancel): "
                "every count is final and nothing was changed."
            ),
            "model": IngestCancel,
        },
        **problems(*JOB_READ_PROBLEMS, "ingest_expired", models={410: ExpiredIngestProblem}),
    },
)
async def cancel_ingest(
    name: JobName, response: Response, services: ServicesDep, caller: PrincipalDep
) -> IngestCancel:
    """Cancel an ingest: items not started are not made, items being made finish or stop
    cleanly (nothing half made, nothing committed after the cancel's mark), and the answer
    says how many of each.

    The job is kept, not deleted: it finishes with every item's outcome — succeeded,
    failed, or failed with reason `Cancelled` — readable as for any job (`kubectl get ij`
    shows when it was cancelled). Idempotent: a repeat changes nothing and answers the
    counts as they are then (200 once the job has finished). A job of a collection the
    token may not see is a 404, as unknown.
    """
    job = await _job_or_gone(services, name, caller)
    caller.check_write(str(job["spec"]["collection"]))
    parsed = IngestJob.read(job)
    if not parsed.status.phase.finished and jobs.cancelled_at(parsed) is None:
        asked = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        patched = await services.kube.annotate(
            name, str(parsed.metadata.uid), {crd.ANNOTATION_CANCELLED: asked}
        )
        if patched is None:  # deleted (or replaced) meanwhile
            raise _not_found(name)
        parsed = IngestJob.read(patched)
    summary = jobs.job_summary(parsed)
    if summary.finished:
        response.status_code = status.HTTP_200_OK
    return IngestCancel(
        name=summary.name,
        status_url=summary.status_url,
        cancelled_at=summary.cancelled_at,
        phase=summary.phase,
        finished=summary.finished,
        total=summary.total,
        succeeded=summary.succeeded,
        failed=summary.failed - summary.cancelled,
        cancelled=summary.cancelled,
        stopping=max(0, summary.total - summary.succeeded - summary.failed),
    )


# Failures that say nothing about the image: a retry may well succeed.
RETRIED_BY_DEFAULT = frozenset(
    {
        FailureReason.CANCELLED,
        FailureReason.RETRIES_EXHAUSTED,
        FailureReason.RESULT_LOST,
        FailureReason.UNKNOWN,
    }
)
# Failures of the upload rather than the image: retrying the same upload cannot help.
UPLOAD_FAILURES = frozenset(
    {
        FailureReason.SOURCE_MISSING,
        FailureReason.UPLOAD_ALREADY_INGESTED,
        FailureReason.UPLOAD_NOT_IN_COLLECTION,
        FailureReason.SOURCE_CHANGED,
    }
)
# The most failures a retry reads: a job has at most this many items.
RETRY_PAGE = 500


@router.post(
    "/{name}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RetryAccepted,
    operation_id="retryIngest",
    responses={
        202: {
            "description": (
                "The retry job was created (or, on a repeat, already exists: "
                "`Idempotent-Replayed: true`); `Location` is its status URL."
            )
        },
        200: {
            "description": "No failed item could be retried; `skipped` says why.",
            "model": RetryAccepted,
        },
        **problems(
            *JOB_READ_PROBLEMS,
            "forbidden",
            "malformed_json",
            "ingest_expired",
            "ingest_running",
            "rate_limited",
            models={410: ExpiredIngestProblem},
        ),
    },
)
async def retry_ingest(
    name: JobName,
    response: Response,
    services: ServicesDep,
    caller: PrincipalDep,
    body: RetryRequest | None = None,
) -> RetryAccepted:
    """Re-run the failed items of a finished ingest whose uploads still exist, as a new
    IngestJob (labelled `emulsion.dev/retry-of`) with the same collection and profile.

    By default only items that failed for a reason outside the image are retried
    (`Cancelled`, `RetriesExhausted`, `ResultLost`, `Unknown`); `include_deterministic`
    adds those whose image failed (they fail again unless a processor's limits changed).
    An item whose upload is gone, or that failed because of its upload, is reported in
    `skipped`, not retried: upload the file again. One retry per job: a repeat answers the
    same retry job (`Idempotent-Replayed: true`); retry the retry job for a second round.
    The job must have finished (409 `ingest_running` otherwise): cancel it first.
    """
    include_deterministic = body.include_deterministic if body is not None else False
    job = await _job_or_gone(services, name, caller)
    collection = str(job["spec"]["collection"])
    caller.check_write(collection)
    parsed = IngestJob.read(job)
    if not parsed.status.phase.finished:
        raise ApiError(
            409,
            "ingest_running",
            f"ingest {name!r} has not finished; only a finished ingest's failures are retried",
        )
    failures = await _all_failures(services, name, str(parsed.metadata.uid))
    items = await services.records.items(parsed) or ()
    wanted: list[tuple[FailureDetail, str, str]] = []
    skipped: list[RetrySkipped] = []
    for failure in failures:
        reason = FailureReason.parse(failure.reason)
        if failure.index >= len(items):
            continue
        item = items[failure.index]
        if reason in UPLOAD_FAILURES:
            skipped.append(_skip(failure, reason, "upload_gone"))
        elif reason not in RETRIED_BY_DEFAULT and not include_deterministic:
            skipped.append(_skip(failure, reason, "deterministic"))
        else:
            wanted.append((failure, item.source, item.asset))
    selector = f"{crd.LABEL_RETRY_OF}={name}"
    existing = await services.kube.list(selector)
    if wanted and not existing:
        own = [key for _, key, _ in wanted if caller.may_use_upload(key, collection)]
        gone = set(await services.store.missing(own)) if own else set()
        mine = set(own)
        for failure, key, _ in wanted:
            if key not in mine or key in gone:
                skipped.append(_skip(failure, FailureReason.parse(failure.reason), "upload_gone"))
        wanted = [entry for entry in wanted if entry[1] in mine and entry[1] not in gone]
    skipped.sort(key=lambda entry: entry.index)
    if existing:
        candidates = [failure for failure, _, _ in wanted]
        return await _retry_replay(services, name, existing, candidates, skipped, response)
    if not wanted:
        response.status_code = status.HTTP_200_OK
        return RetryAccepted(retry_of=name, name=None, status_url=None, skipped=skipped)
    planned = [jobs.PlannedItem(key, asset) for _, key, asset in wanted]
    plan = jobs.JobPlan(
        namespace=services.kube.namespace,
        collection=collection,
        profile=parsed.spec.profile,
        items=planned,
        trace_headers=telemetry.inject(),
        ttl_seconds_after_finished=services.settings.ttl_seconds_after_finished,
        owner=caller.owner,
        retry_of=name,
    )
    await services.limiter.admit_jobs(services.kube, caller.owner, caller.limits, len(planned))
    versions = await services.bus.mint_versions(jobs.part_count(planned))
    created = await _create_all(services, plan, jobs.plan_parts(plan, versions))
    winner = await _settle_race(services.kube, selector, created)
    if winner is not created:
        candidates = [failure for failure, _, _ in wanted]
        return await _retry_replay(services, name, winner, candidates, skipped, response)
    return _retry_answer(name, created[0], [f for f, _, _ in wanted], planned, skipped, response)


def _skip(failure: FailureDetail, reason: FailureReason, why: str) -> RetrySkipped:
    return RetrySkipped.model_validate(
        {"index": failure.index, "asset": failure.asset, "reason": reason, "skipped": why}
    )


async def _all_failures(services: Services, name: str, uid: str) -> list[FailureDetail]:
    found: list[FailureDetail] = []
    after = -1
    while True:
        page, next_index = await services.records.failures(name, uid, after, RETRY_PAGE)
        found += page
        if next_index is None or not page:
            return found
        after = next_index


def _retry_answer(
    name: str,
    job: jobs.Job,
    failures: list[FailureDetail],
    planned: list[jobs.PlannedItem],
    skipped: list[RetrySkipped],
    response: Response,
) -> RetryAccepted:
    retry = str(job["metadata"]["name"])
    response.headers["Location"] = jobs.ingest_url(retry)
    return RetryAccepted(
        retry_of=name,
        name=retry,
        status_url=jobs.ingest_url(retry),
        items=[
            RetryItem(
                index=index,
                original_index=failure.index,
                asset=item.asset,
                upload_key=item.upload_key,
                reason=FailureReason.parse(failure.reason),
                attempts=failure.attempts,
            )
            for index, (failure, item) in enumerate(zip(failures, planned, strict=True))
        ],
        skipped=skipped,
    )


async def _retry_replay(
    services: Services,
    name: str,
    existing: list[jobs.Job],
    failures: list[FailureDetail],
    skipped: list[RetrySkipped],
    response: Response,
) -> RetryAccepted:
    """The answer of the retry already made: its items, matched to the original's
    retryable `failures` by asset; one it left out had its upload gone then."""
    [first, *_] = jobs.first_request(existing)
    retried = await services.records.items(IngestJob.read(first)) or ()
    by_asset = {failure.asset: failure for failure in failures}
    matched = [(by_asset[item.asset], item) for item in retried if item.asset in by_asset]
    taken = {failure.index for failure, _ in matched}
    left = [
        _skip(failure, FailureReason.parse(failure.reason), "upload_gone")
        for failure in failures
        if failure.index not in taken
    ]
    response.headers["Idempotent-Replayed"] = "true"
    return _retry_answer(
        name,
        first,
        [failure for failure, _ in matched],
        [jobs.PlannedItem(item.source, item.asset) for _, item in matched],
        sorted([*skipped, *left], key=lambda entry: entry.index),
        response,
    )
