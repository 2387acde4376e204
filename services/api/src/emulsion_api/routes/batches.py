"""`/v1/batches/<id>`: the parts of a request that was split into several IngestJobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from emulsion_api import jobs
from emulsion_api.deps import PrincipalDep, ServicesDep
from emulsion_api.errors import ApiError, problems
from emulsion_api.models import BatchStatus
from emulsion_contracts import crd

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
    responses=problems(
        "unauthorized", "not_found", "invalid_request", "overloaded", "unavailable", "internal"
    ),
)
async def get_batch(batch: BatchId, services: ServicesDep, caller: PrincipalDep) -> BatchStatus:
    """Phase and counts over all parts, and each part's summary (items: per part)."""
    parts = await services.kube.list(f"{crd.LABEL_BATCH}={batch}")
    # One request made every part, for one collection; any part out of scope hides it all.
    if not parts or not all(caller.may_read(str(p["spec"]["collection"])) for p in parts):
        raise ApiError(404, "not_found", f"no batch {batch!r}")
    return jobs.batch_status(batch, parts)
