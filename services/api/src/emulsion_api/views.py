"""Response bodies that need the object store: item outputs and assets, with URLs."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from emulsion_api import jobs
from emulsion_api.deps import Services
from emulsion_api.models import (
    Asset,
    AssetEntry,
    Failure,
    FocalPointBody,
    IngestStatus,
    ItemStatus,
    JobSummary,
    Original,
    Output,
    PhotoMetadataBody,
    PlaceholderBody,
    RenderingInfo,
)
from emulsion_api.store import ListedManifest, Store, StoredManifest
from emulsion_contracts import crd, keys
from emulsion_contracts.ingestjob import IngestJob, JobItem
from emulsion_contracts.manifest import AssetManifest


def _original(store: Store, manifest: AssetManifest) -> Original:
    source = manifest.original
    return Original(
        url=store.download_url(source.key),
        filename=source.uploaded_name or source.filename,
        stored_filename=source.filename,
        content_type=source.content_type,
        bytes=source.bytes,
        width=source.width,
        height=source.height,
        sha256=source.sha256,
    )


def _metadata(manifest: AssetManifest) -> PhotoMetadataBody | None:
    """The photo's metadata: every field null for a photo that says nothing; null (not
    known) for a manifest written before metadata was recorded, or a tombstone."""
    if manifest.is_tombstone or manifest.placeholder is None:
        return None  # the placeholder is recorded with the metadata: an older manifest
    found = manifest.metadata
    if found is None:
        return PhotoMetadataBody()
    fields = found.model_dump()
    if found.taken_at is not None:
        fields["taken_at"] = found.taken_at.isoformat()
    return PhotoMetadataBody.model_validate(fields)


def _placeholder(manifest: AssetManifest) -> PlaceholderBody | None:
    made = manifest.placeholder
    if made is None:
        return None
    return PlaceholderBody(thumbhash=made.thumbhash, dominant_color=made.dominant_color)


def _outputs(store: Store, manifest: AssetManifest) -> list[Output]:
    return [
        Output(
            style=derivative.style,
            url=store.download_url(derivative.key),
            width=derivative.width,
            height=derivative.height,
            bytes=derivative.bytes,
            content_type=derivative.content_type,
            renderings=[
                RenderingInfo(
                    format=rendering.format,
                    url=store.download_url(rendering.key),
                    bytes=rendering.bytes,
                    content_type=rendering.content_type,
                )
                for rendering in derivative.renderings
            ],
        )
        for derivative in manifest.derivatives
    ]


def style_url(collection: str, asset: str, style: str) -> str:
    """The style's own URL, which redirects to the rendering the request's `Accept` picks."""
    return f"{asset_url(collection, asset)}/styles/{style}"


def asset(store: Store, stored: StoredManifest) -> Asset:
    manifest = stored.manifest
    return Asset(
        collection=manifest.collection,
        asset=manifest.asset,
        version=manifest.version,
        job=manifest.job.name,
        index=manifest.index,
        committed_at=manifest.committed_at,
        original=_original(store, manifest),
        outputs=_outputs(store, manifest),
        focal_point=(
            FocalPointBody(x=manifest.focal_point.x, y=manifest.focal_point.y)
            if manifest.focal_point
            else None
        ),
        metadata=_metadata(manifest),
        placeholder=_placeholder(manifest),
    )


async def ingest_status(
    services: Services, job: jobs.Job, offset: int, limit: int, *, urls: bool = True
) -> IngestStatus:
    """The job's summary and one page of its items.

    A succeeded item's outputs come from its asset's manifest, and only while that
    manifest still names this item's version: a later upload or a delete replaces them,
    and the superseded files are on their way to the janitor. Without `urls`, no manifest
    is read and nothing is presigned: states, versions and reasons alone.
    """
    parsed = IngestJob.read(job)
    version = parsed.version
    collection = parsed.spec.collection
    page: list[tuple[int, JobItem]] = []
    states = jobs.ItemStates(set(), set(), {})
    if limit > 0 and offset < parsed.spec.count:
        listed = await services.records.items(parsed) or ()
        page = list(enumerate(listed))[offset : offset + limit]
        states = await item_states(services, parsed)
    attempts = await failed_attempts(services, parsed, page, states)
    succeeded_assets = (
        sorted({item.asset for i, item in page if states.state(i) == "succeeded"}) if urls else []
    )
    manifests = await asyncio.gather(
        *(services.store.read_manifest(collection, name) for name in succeeded_assets)
    )
    by_asset = dict(zip(succeeded_assets, manifests, strict=True))

    def item_status(index: int, item: JobItem) -> ItemStatus:
        state = states.state(index)
        item_version = keys.version_id(version, index) if version else None
        view = ItemStatus(
            index=index,
            asset=item.asset,
            upload_key=item.source,
            state=state,
            version=item_version,
            reason=states.reasons.get(index) if state == "failed" else None,
            attempts=attempts.get(index),
        )
        if state != "succeeded" or not urls:
            return view
        stored = by_asset.get(item.asset)
        if stored is None or stored.manifest.version != item_version:
            return view.model_copy(update={"live": False})
        return view.model_copy(
            update={
                "live": True,
                "original": _original(services.store, stored.manifest),
                "outputs": _outputs(services.store, stored.manifest),
                "placeholder": _placeholder(stored.manifest),
            }
        )

    if urls:
        # Presigning is CPU work; a page of a hundred items must not stall the event loop.
        items = await services.store.run(lambda: [item_status(i, item) for i, item in page])
    else:
        items = [item_status(i, item) for i, item in page]
    summary = await first_failures(services, parsed, jobs.job_summary(parsed))
    return IngestStatus(**summary.model_dump(), item_offset=offset, items=items)


# The most failure records one status page reads for its failed items' attempts.
ATTEMPTS_READ_MAX = 500


async def failed_attempts(
    services: Services, job: IngestJob, page: list[tuple[int, JobItem]], states: jobs.ItemStates
) -> dict[int, int]:
    """The attempts of the page's failed items, from their failure records (one paged
    read, only when the page has failed items); an item without a count is left out."""
    failed = [index for index, _ in page if index in states.failed]
    uid = job.metadata.uid
    if not failed or not uid:
        return {}
    wanted = min(len(failed), ATTEMPTS_READ_MAX)
    found, _ = await services.records.failures(job.metadata.name, uid, failed[0] - 1, wanted)
    return {d.index: d.attempts for d in found if d.attempts is not None and d.index in failed}


async def first_failures(services: Services, job: IngestJob, summary: JobSummary) -> JobSummary:
    """The summary with its first failures whole, from the job's records: the status
    lists examples only as its bytes allow (none, for some one-item jobs), cut short."""
    wanted = min(summary.failed, crd.MAX_FAILURES_LISTED)
    uid = job.metadata.uid
    if not uid or wanted == 0 or len(summary.failures) >= wanted:
        return summary
    found, _ = await services.records.failures(job.metadata.name, uid, -1, wanted)
    if not found:
        return summary
    failures = [Failure.of(detail) for detail in found]
    return summary.model_copy(update={"failures": failures})


async def item_states(services: Services, job: IngestJob) -> jobs.ItemStates:
    """Every finished item's state: from the job's outcomes record (the controller writes
    it before the status that counts it), or, for a job written before those records,
    from the index ranges its status kept."""
    status = job.status
    if not (status.succeeded or status.failed):
        return jobs.ItemStates(set(), set(), {})
    uid = job.metadata.uid
    record = await services.records.outcomes(job.metadata.name, uid) if uid else None
    if record is not None:
        return jobs.outcome_states(record)
    return jobs.item_states(status)


def asset_url(collection: str, asset: str) -> str:
    return f"/v1/assets/{collection}/{quote(asset, safe='')}"


def asset_entry(store: Store, listed: ListedManifest, stored: StoredManifest) -> AssetEntry:
    manifest = stored.manifest
    tombstone = manifest.is_tombstone
    return AssetEntry(
        collection=manifest.collection,
        asset=manifest.asset,
        url=asset_url(manifest.collection, manifest.asset),
        state="deleted" if tombstone else "live",
        version=manifest.version,
        updated_at=listed.modified,
        committed_at=manifest.committed_at,
        deleted_at=manifest.deleted_at,
        original=None if tombstone else _original(store, manifest),
        outputs=[] if tombstone else _outputs(store, manifest),
        metadata=_metadata(manifest),
        placeholder=_placeholder(manifest),
    )
