"""Manifests for tests that need a live asset without rendering one."""

from __future__ import annotations

from datetime import datetime

from emulsion_contracts import keys
from emulsion_contracts.manifest import AssetManifest, Original, PhotoMetadata
from emulsion_contracts.messages import JobRef


def original_only(
    collection: str,
    asset: str,
    version: str,
    committed_at: datetime,
    metadata: PhotoMetadata | None = None,
) -> AssetManifest:
    """A live manifest of an original alone (no styles), with `metadata` if given."""
    return AssetManifest(
        collection=collection,
        asset=asset,
        version=version,
        job=JobRef(namespace="default", name="job", uid="uid"),
        index=0,
        original=Original(
            key=keys.original_key(collection, asset, version, "a.jpg"),
            filename="a.jpg",
            content_type="image/jpeg",
            bytes=1,
            width=1,
            height=1,
        ),
        derivatives=(),
        committed_at=committed_at,
        metadata=metadata,
    )
