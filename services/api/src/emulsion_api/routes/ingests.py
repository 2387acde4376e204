"""`/v1/ingests`: turn uploaded keys into IngestJobs (202), and report their progress."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Response, status
from fastapi.sse import EventSourceResponse, ServerSentEvent

from emulsion_api import commits, jobs, reads, views
from emulsion_api.deps import FollowingDep, Principal, PrincipalDep, Services, ServicesDep
from emulsion_api.errors import ApiError, ErrorDetail, problems
from emulsion_api.kube import Kube
from emulsion_api.models import (
    IngestAccepted,
    IngestList,
    IngestRequest,
    IngestStatus,
    JobDeletedEvent,
    JobSummary,
    StreamErrorEvent,
)
from emulsion_contracts import crd, keys, telemetry

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


def _not_found(name: str) -> ApiError:
    return ApiError(404, "not_found", f"no ingest named {name!r}")


async def _job_or_404(kube: Kube, name: str, caller: Principal) -> jobs.Job:
    """The job, if it exists and its collection is the caller's to see; else 404."""
    job = await kube.get(name)
    if job is None or not caller.may_read(str(job["spec"]["collection"])):
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
    token, collection and profile is in flight share the next create (group commit): the
    answer lists this request's items only, each with the shared job and its `job_index`,
    and the job's status counts the items of every request in it.
    """
    settings = services.settings
    caller.check_write(body.collection)
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
            return _replay(jobs.first_request(existing), idempotency[2], response)
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
    )
    await services.limiter.admit_jobs(services.kube, caller.owner, caller.limits, len(planned))
    if idempotency is None and len(planned) <= commits.MAX_GROUPED_REQUEST_ITEMS:
        job, offset = await services.commits.submit(
            (caller.id, body.collection, body.profile),
            planned,
            plan.trace_headers,
            functools.partial(_create_group, services, plan),
        )
        result = jobs.accepted_share(job, offset, len(planned))
        response.headers["Location"] = result.status_url
        return result
    # Minted right before the jobs are made: each version follows every version (and
    # tombstone) minted before, whichever replica minted it (emulsion_contracts.clock).
    versions = await services.bus.mint_versions(jobs.part_count(planned))
    created = await _create_all(services.kube, jobs.build_jobs(plan, versions))
    if idempotency is not None:
        winner = await _settle_race(services.kube, idempotency[0], created)
        if winner is not created:
            return _replay(winner, idempotency[2], response)
    result = jobs.accepted(created)
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
    versions = await services.bus.mint_versions(1)
    [body] = jobs.build_jobs(dataclasses.replace(plan, items=items, trace_headers=trace), versions)
    return await services.kube.create(body)


def _replay(existing: list[jobs.Job], body_hash: str, response: Response) -> IngestAccepted:
    if jobs.stored_request_hash(existing) != body_hash:
        raise ApiError(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request body",
        )
    result = jobs.accepted(existing)
    response.headers["Location"] = result.status_url
    response.headers["Idempotent-Replayed"] = "true"
    return result


async def _create_all(kube: Kube, bodies: list[jobs.Job]) -> list[jobs.Job]:
    """Create every part, or none: a part that fails takes the others back."""
    results = await asyncio.gather(*(kube.create(body) for body in bodies), return_exceptions=True)
    created = [result for result in results if isinstance(result, dict)]
    failure = next((r for r in results if isinstance(r, BaseException)), None)
    if failure is None:
        return created
    await asyncio.gather(
        *(kube.delete(job["metadata"]["name"]) for job in created), return_exceptions=True
    )
    raise failure


async def _settle_race(kube: Kube, label: str, created: list[jobs.Job]) -> list[jobs.Job]:
    """Two requests with one Idempotency-Key may both have found nothing and created jobs;
    the earliest wins, the others delete what they made and answer with the winner's."""
    everything = await kube.list(f"{jobs.LABEL_IDEMPOTENCY}={label}")
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
    # A job carries its whole item list (up to 1,000 items), so pages stay small.
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


# A job's status, read once or followed (a long poll's `wait`, or its event stream).
FOLLOWING_PROBLEMS = problems(
    "unauthorized",
    "not_found",
    "invalid_request",
    "overloaded",
    "too_many_watches",
    "rate_limited",
    "unavailable",
    "internal",
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
    """
    job = await _job_or_404(services.kube, name, caller)
    if wait > 0 and not jobs.phase(job).finished:
        with services.limiter.following(caller.owner, caller.limits):
            job = await _status_change(
                services.kube, job, min(wait, services.settings.max_wait_seconds)
            )
    return await views.ingest_status(services, job, item_offset, item_limit, urls=urls)


async def _status_change(kube: Kube, job: jobs.Job, seconds: float) -> jobs.Job:
    deadline = time.monotonic() + seconds
    initial = job.get("status")
    current = job
    while (remaining := deadline - time.monotonic()) >= MIN_WATCH_SECONDS:
        change = await kube.next_change(current, remaining)
        if change is None:
            fresh = await kube.get(job["metadata"]["name"])
            if fresh is None:
                raise _not_found(job["metadata"]["name"])
            current = fresh
        elif change.kind == "deleted":
            raise _not_found(job["metadata"]["name"])
        else:
            current = change.job
        if current.get("status") != initial:
            break
    return current


async def _followed_job(name: JobName, services: ServicesDep, caller: PrincipalDep) -> jobs.Job:
    # A dependency, so a missing job is a 404 before the event stream starts.
    return await _job_or_404(services.kube, name, caller)


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
