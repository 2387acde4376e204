"""`/v1/assets/<collection>/<asset>`: the live version of an asset, and its deletion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, status

from emulsion_api import views
from emulsion_api.deps import PrincipalDep, ServicesDep
from emulsion_api.errors import (
    BACKENDS,
    CONFLICT,
    FORBIDDEN,
    INVALID,
    NOT_FOUND,
    UNAUTHORIZED,
    ApiError,
)
from emulsion_api.models import Asset, Deleted
from emulsion_contracts import keys
from emulsion_contracts.messages import AssetName

router = APIRouter(prefix="/v1/assets", tags=["assets"])

CollectionName = Annotated[
    str, Path(pattern=f"^{keys.COLLECTION_PATTERN}$", max_length=keys.COLLECTION_MAX)
]
# The user's name, percent-encoded in the URL like any path segment (NFC after decoding).
AssetPath = Annotated[
    AssetName, Path(description="The asset's name, percent-encoded in the URL (UTF-8).")
]


def _checked(collection: str, asset: str) -> None:
    try:
        keys.manifest_key(collection, asset)
    except keys.InvalidKey as error:
        raise ApiError(422, "invalid_request", str(error)) from None


def _not_found(collection: str, asset: str) -> ApiError:
    return ApiError(404, "not_found", f"no asset {asset!r} in collection {collection!r}")


@router.get(
    "/{collection}/{asset}",
    response_model=Asset,
    responses={**UNAUTHORIZED, **NOT_FOUND, **INVALID, **BACKENDS},
)
async def get_asset(
    collection: CollectionName, asset: AssetPath, services: ServicesDep, caller: PrincipalDep
) -> Asset:
    """The live manifest, with download URLs for the original and every style."""
    _checked(collection, asset)
    if not caller.may_read(collection):
        raise _not_found(collection, asset)
    stored = await services.store.read_manifest(collection, asset)
    if stored is None:
        raise _not_found(collection, asset)
    return await services.store.run(lambda: views.asset(services.store, stored))


@router.delete(
    "/{collection}/{asset}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Deleted,
    responses={**UNAUTHORIZED, **FORBIDDEN, **NOT_FOUND, **INVALID, **CONFLICT, **BACKENDS},
)
async def delete_asset(
    collection: CollectionName, asset: AssetPath, services: ServicesDep, caller: PrincipalDep
) -> Deleted:
    """Replace the manifest by a tombstone (the asset stops being live at once); its files go later.

    The tombstone carries a version newer than every job created before it, so a queued or
    retried older item can never make the asset live again; a newer ingest can. The keys are
    handed to the janitor first: if the tombstone write then fails or loses to a newer commit
    (409), the janitor still never deletes a key a manifest points to, and the old version's
    keys were due for collection anyway.
    """
    _checked(collection, asset)
    caller.check_write(collection)
    stored = await services.store.read_manifest(collection, asset)
    if stored is None:
        raise _not_found(collection, asset)
    grace = services.settings.gc_grace_seconds
    not_before = datetime.now(UTC) + timedelta(seconds=grace)
    await services.bus.publish_deleted(stored.manifest, not_before)
    if not await services.store.delete_manifest(stored):
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
