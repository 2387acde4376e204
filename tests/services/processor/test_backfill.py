"""On the real stack: `emulsion-processor --index-existing` gives versions committed before
the capture-order index existed their entries (live assets only), and running it again
changes nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from emulsion_contracts import keys
from emulsion_contracts.manifest import AssetManifest, PhotoMetadata
from emulsion_devstack.stack import Endpoints
from emulsion_processor.backfill import index_existing
from tests.manifests import original_only

from .conftest import object_keys


def legacy(collection: str, asset: str, metadata: PhotoMetadata | None) -> AssetManifest:
    version = keys.version_id(keys.new_ulid(), 0)
    return original_only(collection, asset, version, datetime.now(UTC), metadata)


def test_existing_live_assets_get_their_index_entries_once(stack: Endpoints, s3: Any) -> None:
    collection = f"c-{uuid.uuid4().hex[:8]}"
    dated = legacy(collection, "写真.JPG", PhotoMetadata(taken_at=datetime(2026, 5, 4, 9, 30)))
    undated = legacy(collection, "scan.png", None)  # written before metadata was recorded
    gone = AssetManifest.tombstone(collection, "gone.jpg", datetime.now(UTC))
    for manifest in (dated, undated, gone):
        s3.put_object(
            Bucket=stack.bucket,
            Key=keys.manifest_key(collection, manifest.asset),
            Body=manifest.to_bytes(),
        )

    report = index_existing(s3, stack.bucket, collection)

    expected = sorted(m.taken_key() or "" for m in (dated, undated))
    assert object_keys(s3, stack.bucket, keys.taken_prefix(collection)) == expected
    assert (report.manifests, report.indexed, report.skipped) == (3, 2, 1)
    # Written again, the same keys: nothing new, nothing lost.
    index_existing(s3, stack.bucket, collection)
    assert object_keys(s3, stack.bucket, keys.taken_prefix(collection)) == expected
