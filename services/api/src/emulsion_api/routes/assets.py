"""`/v1/assets/<collection>`: a collection's assets, newest first or in capture order;
`/v1/assets/<collection>/<asset>`: the live version of an asset, its focal point, and its
deletion.

An asset's `ETag` is its live version (`"<version>"`): `If-None-Match` on a read answers
304 while the version is unchanged, `If-Match` on a delete refuses (412) to delete a
version other than the one the client saw.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response, status
from fastapi.responses import JSONResponse

from emulsion_api import jobs, listing, negotiation, processing, rerenders, views
from emulsion_api.deps import Principal, PrincipalDep, Services, ServicesDep
from emulsion_api.errors import ApiError, Responses, problems
from emulsion_api.models import (
    Asset,
    AssetList,
    AssetPatch,
    AssetPatched,
    AssetProcessing,
    Deleted,
)
from emulsion_api.store import (
    IndexEntry,
    ListedManifest,
    StoredManifest,
)
from emulsion_contracts import keys
from emulsion_contracts.messages import DEFAULT_PROFILE_NAME, AssetName, FocalPoint
from emulsion_runtime import telemetry

router = APIRouter(prefix="/v1/assets", tags=["assets"])

CollectionName = Annotated[
    str,
    Path(
        pattern=f"^{keys.COLLECTION_PATTERN}$",
        max_length=keys.COLLECTION_MAX,
        description="The collection's name.",
        examples=["holiday-2026"],
    ),
]
# The user's name, percent-encoded in the URL like any path segment (NFC after decoding).
AssetPath = Annotated[
    AssetName,
    Path(
        description="The asset's name, percent-encoded in the URL (UTF-8).",
        examples=["IMG_0001.jpg"],
    ),
]

_ETAG_HEADER: Responses = {
    "ETag": {
        "description": "The live version, quoted: send it back in If-None-Match or If-Match.",
        "schema": {"type": "string", "example": '"01JDQ3G2M4P8R6T0V2X4Z6B8D0-00000"'},
    }
}


def etag(version: str) -> str:
    return f'"{version}"'


def _matches(header: str, version: str) -> bool:
    """Whether an If-Match / If-None-Match list names `version` (or is `*`); weak
    validators compare like strong ones, since a version names exact bytes."""
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return "*" in tags or etag(version) in tags


def _checked(collection: str, asset: str) -> None:
    try:
        keys.manifest_key(collection, asset)
    except keys.InvalidKey as error:
        raise ApiError(422, "invalid_request", str(error)) from None


async def _readable_manifest(
    services: Services, caller: Principal, collection: str, asset: str
) -> StoredManifest:
    """The asset's manifest, for a caller who may read its collection; anything else
    (a bad name, another tenant's collection, no such asset) is one and the same 404."""
    _checked(collection, asset)
    if not caller.may_read(collection):
        raise _not_found(collection, asset)
    stored = await services.store.read_manifest(collection, asset)
    if stored is None:
        raise _not_found(collection, asset)
    return stored


def _not_found(collection: str, asset: str) -> ApiError:
    return ApiError(404, "not_found", f"no asset {asset!r} in collection {collection!r}")


@router.get(
    "/{collection}",
    response_model=AssetList,
    operation_id="listAssets",
    responses=problems(
        "unauthorized", "not_found", "invalid_request", "invalid_cursor", "unavailable", "internal"
    ),
)
async def list_assets(
    collection: CollectionName,
    services: ServicesDep,
    caller: PrincipalDep,
    state: Annotated[
        listing.StateFilter,
        Query(
            description=(
                "`live` (default): assets that can be downloaded; `deleted`: tombstones of "
                "deleted assets (until their files are collected and a new ingest revives "
                "them); `all`: both."
            )
        ),
    ] = "live",
    limit: Annotated[
        int, Query(ge=1, le=listing.MAX_PAGE, description="Most entries per page.")
    ] = 50,
    cursor: Annotated[
        str | None,
        Query(
            max_length=listing.CURSOR_MAX,
            description=(
                "`next_cursor` of the previous page (of the same `order`); none for the first page."
            ),
        ),
    ] = None,
    order: Annotated[
        listing.Order,
        Query(
            description=(
                "`written` (default): newest first, by when each manifest was last written. "
                "`taken_at`: in capture order, oldest first, by `metadata.taken_at` in UTC "
                "(a time without an offset is read as UTC); ties by the asset's key, and "
                "assets without a capture time last. Live assets only (`state=live`); "
                "assets ingested before the capture-order index existed are left out until "
                "the operator runs `emulsion-processor --index-existing`. A page may hold "
                "fewer than `limit` items while `next_cursor` is set (it passed over many "
                "superseded index entries): follow the cursor."
            )
        ),
    ] = "written",
) -> AssetList:
    """A page of the collection's assets, newest first (by when each manifest was last
    written) or in capture order (`order=taken_at`), with the download URLs of the
    original and every style: enough for a gallery page. A collection outside the
    token's scopes answers 404."""
    if not caller.may_read(collection):
        raise ApiError(404, "not_found", f"no collection {collection!r}")
    if order == "taken_at":
        if state != "live":
            raise ApiError(
                422, "invalid_request", "order=taken_at lists live assets only (state=live)"
            )
        return await _list_taken(services, collection, limit, cursor)
    position = listing.decode_cursor(cursor, collection, state) if cursor else None
    ordered = listing.newest_first(await services.store.list_manifests(collection))
    candidates = listing.after(ordered, position)

    async def read(entry: ListedManifest) -> StoredManifest | None:
        return await services.store.read_manifest_at(entry.key, tombstones=True)

    found = await listing.page(candidates, state, limit, read)
    # Presigning is CPU work; a page of URLs must not stall the event loop.
    items = await services.store.run(
        lambda: [
            views.asset_entry(services.store, entry, stored) for entry, stored in found.entries
        ]
    )
    next_cursor = (
        listing.encode_cursor(collection, state, found.next_position)
        if found.next_position
        else None
    )
    return AssetList(items=items, next_cursor=next_cursor)


async def _list_taken(
    services: Services, collection: str, limit: int, cursor: str | None
) -> AssetList:
    """A page of `order=taken_at`, from the capture-order index (listing.taken_page)."""
    after = listing.decode_taken_cursor(cursor, collection) if cursor else None

    async def list_from(start: str | None, most: int) -> tuple[list[IndexEntry], bool]:
        return await services.store.list_taken(collection, start, most)

    async def read(entry: IndexEntry) -> StoredManifest | None:
        return await services.store.read_manifest_at(entry.manifest_key)

    found = await listing.taken_page(list_from, read, limit, after)
    items = await services.store.run(
        lambda: [
            views.asset_entry(
                services.store,
                # A live version's manifest was written when it was committed.
                ListedManifest(entry.manifest_key, entry.segment, stored.manifest.committed_at),
                stored,
            )
            for entry, stored in found.entries
        ]
    )
    next_cursor = (
        listing.encode_taken_cursor(collection, found.next_key) if found.next_key else None
    )
    return AssetList(items=items, next_cursor=next_cursor)


@router.get(
    "/{collection}/{asset}",
    response_model=Asset,
    operation_id="getAsset",
    responses={
        200: {"description": "The live asset", "headers": _ETAG_HEADER},
        202: {
            "description": "No version yet: its first is being made (`processing_ingest`)",
            "model": AssetProcessing,
        },
        304: {
            "description": "Not modified: If-None-Match names the live version",
            "headers": _ETAG_HEADER,
        },
        **problems("unauthorized", "not_found", "invalid_request", "unavailable", "internal"),
    },
)
async def get_asset(
    collection: CollectionName,
    asset: AssetPath,
    services: ServicesDep,
    caller: PrincipalDep,
    response: Response,
    if_none_match: Annotated[
        str | None,
        Header(
            alias="If-None-Match",
            max_length=1024,
            description="An `ETag` seen before: answers 304 while it is still the live version.",
        ),
    ] = None,
) -> Asset | Response:
    """The live manifest, with download URLs for the original and every style.

    While an ingest is making a new version, `processing` is true and names it
    (`processing_ingest`), and this answers the earlier version, live until the new one
    commits (never 304 then, so a poller sees the flag). An asset whose first version is
    being made answers **202** with `processing` and the ingest (`AssetProcessing`).
    """
    _checked(collection, asset)
    if not caller.may_read(collection):
        raise _not_found(collection, asset)
    stored, ingest = await asyncio.gather(
        services.store.read_manifest(collection, asset),
        processing.making(services, collection, asset),
    )
    if stored is None:
        if ingest is None:
            raise _not_found(collection, asset)
        making = AssetProcessing(
            collection=collection,
            asset=asset,
            processing=True,
            processing_ingest=ingest,
            status_url=jobs.ingest_url(ingest),
        )
        return JSONResponse(making.model_dump(mode="json"), status_code=status.HTTP_202_ACCEPTED)
    version = stored.manifest.version
    if ingest is None and if_none_match is not None and _matches(if_none_match, version):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag(version)})
    response.headers["ETag"] = etag(version)
    found = await services.store.run(lambda: views.asset(services.store, stored))
    if ingest is None:
        return found
    return found.model_copy(update={"processing": True, "processing_ingest": ingest})


@router.get(
    "/{collection}/{asset}/styles/{style}",
    status_code=status.HTTP_302_FOUND,
    operation_id="getAssetStyle",
    response_class=Response,
    responses={
        302: {
            "description": (
                "Found: `Location` is the download URL of the rendering `Accept` picks. "
                "`Vary: Accept`; not stored by shared caches (the URL may be presigned)."
            ),
            "headers": {
                "Location": {
                    "description": "The chosen rendering's download URL.",
                    "schema": {"type": "string"},
                },
                "Vary": {"description": "Always `Accept`.", "schema": {"type": "string"}},
                "X-Emulsion-Format": {
                    "description": "The chosen rendering's format, e.g. `avif`.",
                    "schema": {"type": "string"},
                },
            },
        },
        **problems("unauthorized", "not_found", "invalid_request", "unavailable", "internal"),
    },
)
async def get_asset_style(
    collection: CollectionName,
    asset: AssetPath,
    style: Annotated[
        str,
        Path(
            pattern=f"^{keys.STYLE_PATTERN}$",
            max_length=32,
            description="The style's name in the asset's profile.",
            examples=["thumb"],
        ),
    ],
    services: ServicesDep,
    caller: PrincipalDep,
    accept: Annotated[
        str | None,
        Header(
            description=(
                "The formats the client reads, with q-values (`image/avif,image/webp,*/*`); "
                f"read up to its first {negotiation.ACCEPT_MAX} characters. "
                "The best accepted rendering in the style's order; none or `*/*`: the first "
                "of the style's `formats`; nothing acceptable: JPEG if the style has it."
            ),
        ),
    ] = None,
) -> Response:
    """A redirect to one rendering of the style, chosen by the request's `Accept`: the
    style's stable URL for a page that serves AVIF or WebP with a JPEG fallback."""
    stored = await _readable_manifest(services, caller, collection, asset)
    derivative = next((d for d in stored.manifest.derivatives if d.style == style), None)
    if derivative is None:
        raise ApiError(404, "not_found", f"asset {asset!r} has no style {style!r}")
    renderings = derivative.all_renderings()
    chosen = renderings[negotiation.choose(accept, [r.content_type for r in renderings])]
    url = await services.store.run(lambda: services.store.download_url(chosen.key))
    return Response(
        status_code=status.HTTP_302_FOUND,
        headers={
            "Location": url,
            "Vary": "Accept",
            # The choice follows the live version, and a presigned URL expires: a private
            # cache may keep it briefly, a shared one not at all.
            "Cache-Control": "private, max-age=60",
            "ETag": etag(f"{stored.manifest.version}-{chosen.format}"),
            "X-Emulsion-Format": chosen.format,
        },
    )


@router.delete(
    "/{collection}/{asset}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Deleted,
    operation_id="deleteAsset",
    responses=problems(
        "unauthorized",
        "forbidden",
        "not_found",
        "invalid_request",
        "asset_changed",
        "precondition_failed",
        "unavailable",
        "internal",
    ),
)
async def delete_asset(
    collection: CollectionName,
    asset: AssetPath,
    services: ServicesDep,
    caller: PrincipalDep,
    if_match: Annotated[
        str | None,
        Header(
            alias="If-Match",
            max_length=1024,
            description="Delete only if the live version is this `ETag` (412 otherwise).",
        ),
    ] = None,
) -> Deleted:
    """Replace the manifest by a tombstone (the asset stops being live at once); its files go later.

    The tombstone carries a version newer than every job created before it (minted from the
    shared clock, so whatever the replicas' clocks say), so a queued or retried older item
    can never make the asset live again; a newer ingest can. The keys are
    handed to the janitor first: if the tombstone write then fails or loses to a newer commit
    (409), the janitor still never deletes a key a manifest points to, and the old version's
    keys were due for collection anyway.
    """
    _checked(collection, asset)
    caller.check_write(collection)
    stored = await services.store.read_manifest(collection, asset)
    if stored is None:
        raise _not_found(collection, asset)
    if if_match is not None and not _matches(if_match, stored.manifest.version):
        raise ApiError(
            412,
            "precondition_failed",
            f"the live version is {etag(stored.manifest.version)}, which If-Match does not name",
        )
    # Minted after the manifest was read: later than the version read, and than every
    # job accepted before this delete (503 with Retry-After while NATS is down).
    [version] = await services.bus.mint_versions(1)
    grace = services.settings.gc_grace_seconds
    not_before = datetime.now(UTC) + timedelta(seconds=grace)
    await services.bus.publish_deleted(stored.manifest, not_before)
    if not await services.store.delete_manifest(stored, version):
        if await services.store.read_manifest(collection, asset) is None:
            raise _not_found(collection, asset)
        raise ApiError(
            409, "asset_changed", "a new version of the asset went live meanwhile; read it again"
        )
    return Deleted(
        collection=collection,
        asset=asset,
        version=stored.manifest.version,
        keys=len(stored.manifest.live_keys()),
        not_before=not_before,
    )


@router.patch(
    "/{collection}/{asset}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=AssetPatched,
    operation_id="patchAsset",
    responses={
        202: {
            "description": "Accepted: the crops are being made again; `Location` follows it",
            "headers": {"Location": {"description": "The re-render's status URL."}},
        },
        **problems(
            "malformed_json",
            "unauthorized",
            "not_found",
            "invalid_request",
            "unknown_profile",
            "precondition_failed",
            "unavailable",
            "internal",
        ),
    },
)
async def patch_asset(
    collection: CollectionName,
    asset: AssetPath,
    body: AssetPatch,
    services: ServicesDep,
    caller: PrincipalDep,
    response: Response,
    if_match: Annotated[
        str | None,
        Header(
            alias="If-Match",
            max_length=1024,
            description="Change only if the live version is this `ETag` (412 otherwise).",
        ),
    ] = None,
) -> AssetPatched:
    """Set (or clear, with null) the asset's focal point: its crop styles are made again
    around it from the stored original, as a new version; every other style and the
    original stay as they are. Later versions keep it.

    The re-render is an IngestJob of one item (`job`), made only while the version read
    here is live: an upload or a delete committed meanwhile wins (the item then reports
    it was not made live). A collection outside the token's scopes answers 404, as for an
    asset that does not exist.
    """
    stored = await _readable_manifest(services, caller, collection, asset)
    manifest = stored.manifest
    if if_match is not None and not _matches(if_match, manifest.version):
        raise ApiError(
            412,
            "precondition_failed",
            f"the live version is {etag(manifest.version)}, which If-Match does not name",
        )
    profile_name = manifest.profile or DEFAULT_PROFILE_NAME
    profile = services.profiles.get(profile_name)
    if profile is None:
        raise ApiError(
            422,
            "unknown_profile",
            f"profile {profile_name!r}, which made the asset, is no longer configured",
        )
    made = {derivative.style for derivative in manifest.derivatives}
    crops = [s.name for s in profile.styles if s.fit == "crop" and s.name in made]
    if not crops:
        raise ApiError(
            422, "invalid_request", f"the asset has no crop style (profile {profile_name!r})"
        )
    point = body.focal_point
    focal = FocalPoint(x=point.x, y=point.y) if point is not None else None
    # After the read: later than the version read, so the re-render can replace it.
    [version] = await services.bus.mint_versions(1)
    job = await services.kube.create(
        rerenders.job(
            services.kube.namespace,
            manifest,
            profile_name,
            focal,
            version,
            telemetry.inject(),
            services.settings.ttl_seconds_after_finished,
        )
    )
    name = str(job["metadata"]["name"])
    response.headers["Location"] = jobs.ingest_url(name)
    return AssetPatched(
        collection=collection,
        asset=asset,
        version=manifest.version,
        focal_point=point,
        styles=crops,
        job=name,
        status_url=jobs.ingest_url(name),
    )
