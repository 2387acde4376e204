"""A job its TTL removed from the cluster: 410 Gone with what is still known, or the same
404 as any unknown name.

A finished IngestJob is deleted `ttlSecondsAfterFinished` after it ends (one hour in the
chart); its records outlive it (EMULSION_RECORDS_RETENTION_SECONDS, a week by default):
the summary the controller wrote when it finished, the outcomes, and the item list the
API wrote. So a client that comes back late learns how its ingest ended and which assets
it made, instead of a 404 it cannot tell from a typo.

Tenancy: the records name the collection (the summary), or the item list does (each
upload key is presigned for one collection); a caller whose token may not see that
collection gets exactly the 404 of an unknown name — same status, code and detail.
"""

from __future__ import annotations

from dataclasses import dataclass

from emulsion_api.deps import Principal, Services
from emulsion_api.errors import ApiError
from emulsion_api.models import ExpiredIngest, MadeAsset
from emulsion_contracts import crd, keys
from emulsion_contracts.ingestjob import JobItem
from emulsion_contracts.jobrecords import JobSummaryRecord, OutcomeRecord


def not_found(name: str) -> ApiError:
    return ApiError(404, "not_found", f"no ingest named {name!r}")


def failures_url(name: str) -> str:
    return f"/v1/ingests/{name}/failures"


@dataclass(frozen=True)
class GoneJob:
    """What the records keep of a job no longer in the apiserver."""

    name: str
    collection: str
    uid: str | None
    summary: JobSummaryRecord | None
    items: tuple[JobItem, ...] | None


async def gone_job(services: Services, name: str, caller: Principal) -> GoneJob:
    """The records of `name`, if it is a job that was and the caller may see; else 404."""
    records = services.records
    summary = await records.summary(name)
    items = None
    if summary is not None:
        collection: str | None = summary.collection
    else:
        items = await records.items_of_gone_job(name)
        collection = keys.staging_collection(items[0].source) if items else None
    if collection is None or not caller.may_read(collection):
        raise not_found(name)
    return GoneJob(name, collection, summary.uid if summary else None, summary, items)


async def expired(services: Services, gone: GoneJob, offset: int, limit: int) -> ApiError:
    """410 `ingest_expired`, the summary and a page of the assets the job made."""
    records = services.records
    outcomes: OutcomeRecord | None
    if gone.uid is not None:
        outcomes = await records.outcomes(gone.name, gone.uid)
    else:
        outcomes = await records.last_outcomes(gone.name)
    items = gone.items if gone.items is not None else await records.items_of_gone_job(gone.name)
    made: list[MadeAsset] = []
    if items is not None and outcomes is not None:
        try:
            succeeded = outcomes.succeeded_set()
        except ValueError:
            succeeded = set()
        made = [
            MadeAsset(index=index, asset=item.asset)
            for index, item in enumerate(items)
            if index in succeeded
        ]
    summary = gone.summary
    body = ExpiredIngest(
        name=gone.name,
        collection=gone.collection,
        phase=crd.Phase.parse(summary.phase) if summary else None,
        total=summary.total if summary else (len(items) if items is not None else None),
        succeeded=summary.succeeded if summary else len(made),
        failed=summary.failed if summary else _failed(outcomes),
        version=summary.version if summary else None,
        started_at=summary.started_at if summary else None,
        completed_at=summary.completed_at if summary else None,
        reasons=dict(summary.reasons) if summary else {},
        failures_url=failures_url(gone.name),
        assets_total=len(made),
        asset_offset=offset,
        assets=made[offset : offset + limit],
    )
    ended = f"finished {body.phase.value} and expired" if body.phase else "was removed"
    return ApiError(
        410,
        "ingest_expired",
        f"ingest {gone.name!r} {ended}: it is no longer in the cluster; what is still "
        f"known is in `ingest`, every failure at {failures_url(gone.name)}",
        extensions={"ingest": body.model_dump(mode="json")},
    )


def _failed(outcomes: OutcomeRecord | None) -> int | None:
    if outcomes is None:
        return None
    try:
        return len(outcomes.failed_set())
    except ValueError:
        return None
