"""`/v1/batches/<id>`: the parts of a request that was split into several IngestJobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from emulsion_api import jobs
from emulsion_api.deps import Principal, PrincipalDep, ServicesDep
from emulsion_api.errors import JOB_READ_PROBLEMS, ApiError, problems
from emulsion_api.models import BatchFailureEntry, BatchFailurePage, BatchStatus, Failure
from emulsion_contracts import crd
from emulsion_contracts.ingestjob import JobOutline

router = APIRouter(prefix="/v1/batches", tags=["batches"])

# A label value, since the batch id is one.
BatchId = Annotated[
    str,
    Path(
        pattern=r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$",
        max_length=63,
        description="The batch id (the `name` of a split request's 202).",
        examples=["01jdq3g2m4p8r6t0v2x4z6b8d0"],
    ),
]


@router.get(
    "/{batch}",
    response_model=BatchStatus,
    operation_id="getBatch",
    responses=problems(*JOB_READ_PROBLEMS),
)
async def get_batch(batch: BatchId, services: ServicesDep, caller: PrincipalDep) -> BatchStatus:
    """Phase and counts over all parts, and each part's summary (items: per part)."""
    return jobs.batch_status(batch, await _parts_or_404(services, batch, caller))


async def _parts_or_404(services: ServicesDep, batch: str, caller: Principal) -> list[jobs.Job]:
    parts = await services.kube.list(f"{crd.LABEL_BATCH}={batch}")
    # One request made every part, for one collection; any part out of scope hides it all.
    if not parts or not all(caller.may_read(str(p["spec"]["collection"])) for p in parts):
        raise ApiError(404, "not_found", f"no batch {batch!r}")
    return parts


@router.get(
    "/{batch}/failures",
    response_model=BatchFailurePage,
    operation_id="listBatchFailures",
    responses=problems(*JOB_READ_PROBLEMS),
)
async def batch_failures(
    batch: BatchId,
    services: ServicesDep,
    caller: PrincipalDep,
    cursor: Annotated[
        str | None,
        Query(
            pattern=r"^[0-9]{1,3}:-?[0-9]{1,7}$",
            description="`next_cursor` of the previous page (`<part>:<last index>`); none "
            "for the first page.",
            examples=["1:41"],
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Most failures per page.")] = 100,
) -> BatchFailurePage:
    """Every failed item of a split request, part after part (in item order), each with
    its part's name, index, asset, reason and whole message (see
    `GET /v1/ingests/{name}/failures`, which this pages across the parts)."""
    parts = sorted(
        (JobOutline.read(p) for p in await _parts_or_404(services, batch, caller)),
        key=lambda part: part.version or "",
    )
    position, after = 0, -1
    if cursor is not None:
        head, _, tail = cursor.partition(":")
        position, after = int(head), int(tail)
    found: list[BatchFailureEntry] = []
    while position < len(parts) and len(found) < limit:
        part = parts[position]
        uid = part.metadata.uid or ""
        page, next_index = await services.records.failures(
            part.metadata.name, uid, after, limit - len(found)
        )
        found += [
            BatchFailureEntry(job=part.metadata.name, **Failure.of(detail).model_dump())
            for detail in page
        ]
        if next_index is not None:
            return BatchFailurePage(
                batch=batch, items=found, next_cursor=f"{position}:{next_index}"
            )
        position, after = position + 1, -1
    more = position < len(parts)
    return BatchFailurePage(
        batch=batch, items=found, next_cursor=f"{position}:-1" if more else None
    )
