"""A re-render's commit on real MinIO: only over exactly the manifest it read. An upload
committed between its read and its write is another original, which it must never
replace, whatever the versions say; its own write found done on a retry is ALREADY."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emulsion_contracts import keys
from emulsion_contracts.manifest import AssetManifest
from emulsion_devstack.stack import Endpoints
from emulsion_processor import rerender, store

from .test_rerender import ORIGINAL, UPLOAD_VERSION, item, live_manifest, rendered_crops


def stored_and_read(s3: Any, bucket: str) -> tuple[AssetManifest, str, store.Current]:
    """The live manifest stored at its key, and a re-render's read of it."""
    live = live_manifest()
    key = keys.manifest_key(live.collection, live.asset)
    s3.put_object(Bucket=bucket, Key=key, Body=live.to_bytes())
    read = store.read_manifest(s3, bucket, key)
    assert read is not None
    return live, key, read


def test_a_re_render_never_replaces_what_was_committed_after_its_read(
    stack: Endpoints, s3: Any, tmp_path: Path
) -> None:
    live, key, read = stored_and_read(s3, stack.bucket)
    assert read.manifest is not None
    assert read.manifest.original.key == ORIGINAL

    # An upload commits meanwhile, with a version older than the re-render's.
    assert live.version < UPLOAD_VERSION < item().version
    newer = live.model_copy(
        update={
            "version": UPLOAD_VERSION,
            "original_or_none": live.original.model_copy(
                update={"key": keys.original_key("c", "Café.jpg", UPLOAD_VERSION, "Cafe.jpg")}
            ),
        }
    )
    s3.put_object(Bucket=stack.bucket, Key=key, Body=newer.to_bytes())

    made = rerender.build_manifest(item(), live, rendered_crops(tmp_path))
    lost = rerender.commit(s3, stack.bucket, key, made, read)
    assert lost.outcome is store.Outcome.STALE
    now = store.read_manifest(s3, stack.bucket, key)
    assert now is not None and now.manifest == newer


def test_a_re_render_commits_over_its_read_once_and_a_retry_is_already(
    stack: Endpoints, s3: Any, tmp_path: Path
) -> None:
    live, key, read = stored_and_read(s3, stack.bucket)
    made = rerender.build_manifest(item(), live, rendered_crops(tmp_path))
    assert rerender.commit(s3, stack.bucket, key, made, read).outcome is store.Outcome.COMMITTED
    again = rerender.commit(s3, stack.bucket, key, made, read)
    assert again.outcome is store.Outcome.ALREADY
    now = store.read_manifest(s3, stack.bucket, key)
    assert now is not None and now.manifest == made
