"""On the real stack: `GET /v1/assets/<collection>?order=taken_at` walks a collection in
capture order through its index under `taken/` (as the processor leaves it: an entry per
version, superseded ones until the janitor takes them); another tenant and no token are
refused and learn nothing of it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx

from emulsion_contracts import keys
from emulsion_contracts.manifest import AssetManifest, PhotoMetadata, Placeholder
from emulsion_devstack.stack import Endpoints

from ..conftest import TENANT_A_PREFIX, TENANT_A_TOKEN, TENANT_B_TOKEN, ApiProcess, commit_manifest

TOKYO = timezone(timedelta(hours=9))
THUMBHASH = "1QcSHQRnh493V4dIh4eXh1h4kJUI"


def commit_taken(
    s3: Any, bucket: str, collection: str, asset: str, taken_at: datetime | None
) -> AssetManifest:
    """What a processor leaves for one upload taken at `taken_at`: its files, its index
    entry (before the commit), then the live manifest recording the time."""
    version = keys.version_id(keys.new_ulid(), 0)
    files = commit_manifest(s3, bucket, collection, asset, version)
    manifest = files.model_copy(
        update={
            "metadata": PhotoMetadata(taken_at=taken_at) if taken_at else None,
            # Recorded with the metadata, which the API shows only beside it.
            "placeholder": Placeholder(thumbhash=THUMBHASH, dominant_color="#c8a078"),
        }
    )
    entry = manifest.taken_key()
    assert entry is not None
    s3.put_object(Bucket=bucket, Key=entry, Body=b"")
    s3.put_object(Bucket=bucket, Key=keys.manifest_key(collection, asset), Body=manifest.to_bytes())
    return manifest


def walk(client: httpx.Client, collection: str, limit: int) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while len(pages) < 100:
        params: dict[str, Any] = {"order": "taken_at", "limit": limit}
        if cursor:
            params["cursor"] = cursor
        response = client.get(f"/v1/assets/{collection}", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
    raise AssertionError("the pages never end")


def tenant_collection() -> str:
    return f"{TENANT_A_PREFIX}{keys.new_ulid().lower()[-10:]}"


def test_a_page_walk_in_capture_order_shows_each_live_asset_once(
    api_process: ApiProcess, s3: Any, stack: Endpoints
) -> None:
    collection = tenant_collection()
    bucket = stack.bucket
    commit_taken(s3, bucket, collection, "noon-utc.jpg", datetime(2026, 5, 4, 12, 0, tzinfo=UTC))
    # 20:00 in Tokyo is 11:00 UTC: before noon UTC, though its wall clock is later.
    commit_taken(s3, bucket, collection, "tokyo.jpg", datetime(2026, 5, 4, 20, 0, tzinfo=TOKYO))
    commit_taken(s3, bucket, collection, "写真.JPG", datetime(2026, 5, 4, 9, 30))  # no offset
    commit_taken(s3, bucket, collection, "no-exif.png", None)
    commit_taken(s3, bucket, collection, "tie-b.jpg", datetime(2026, 5, 4, 12, 0, tzinfo=UTC))
    # Re-uploaded with another capture time: the old entry stays until the janitor runs.
    commit_taken(s3, bucket, collection, "moved.jpg", datetime(2020, 1, 1, tzinfo=UTC))
    commit_taken(s3, bucket, collection, "moved.jpg", datetime(2030, 1, 1, tzinfo=UTC))
    commit_taken(s3, bucket, collection, "gone.jpg", datetime(2026, 5, 4, 10, 0, tzinfo=UTC))
    expected = ["写真.JPG", "tokyo.jpg", "noon-utc.jpg", "tie-b.jpg", "moved.jpg", "no-exif.png"]

    with api_process.client() as api:
        assert api.delete(f"/v1/assets/{collection}/gone.jpg").status_code == 202
        pages = walk(api, collection, limit=2)
        shown = [entry for page in pages for entry in page]
        assert [entry["asset"] for entry in shown] == expected
        assert all(len(page) <= 2 for page in pages)
        tokyo = next(entry for entry in shown if entry["asset"] == "tokyo.jpg")
        assert tokyo["metadata"]["taken_at"] == "2026-05-04T20:00:00+09:00"
        assert tokyo["state"] == "live" and tokyo["outputs"]
        # The collection's own token (scoped to it) walks the same pages.
        with api_process.client(TENANT_A_TOKEN) as tenant:
            assert [e["asset"] for p in walk(tenant, collection, 4) for e in p] == expected
        # Only live assets, and a cursor of one order is no cursor of the other.
        refused = api.get(
            f"/v1/assets/{collection}", params={"order": "taken_at", "state": "deleted"}
        )
        assert refused.status_code == 422
        cursor = api.get(
            f"/v1/assets/{collection}", params={"order": "taken_at", "limit": 1}
        ).json()["next_cursor"]
        assert cursor is not None
        written = api.get(f"/v1/assets/{collection}", params={"cursor": cursor})
        assert written.status_code == 422 and written.json()["code"] == "invalid_cursor"
        elsewhere = api.get(
            f"/v1/assets/{tenant_collection()}", params={"order": "taken_at", "cursor": cursor}
        )
        assert elsewhere.json()["code"] == "invalid_cursor"


def test_another_tenant_and_no_token_are_refused_and_learn_nothing(
    api_process: ApiProcess, s3: Any, stack: Endpoints
) -> None:
    collection = tenant_collection()
    commit_taken(s3, stack.bucket, collection, "secret-a.jpg", datetime(2026, 5, 4, tzinfo=UTC))
    commit_taken(s3, stack.bucket, collection, "secret-b.jpg", None)
    with api_process.client(TENANT_A_TOKEN) as owner:
        cursor = owner.get(
            f"/v1/assets/{collection}", params={"order": "taken_at", "limit": 1}
        ).json()["next_cursor"]
    assert cursor is not None
    empty = tenant_collection()  # in the same scope pattern, never written
    with api_process.client(TENANT_B_TOKEN) as other:
        for params in ({"order": "taken_at"}, {"order": "taken_at", "cursor": cursor}):
            response = other.get(f"/v1/assets/{collection}", params=params)
            nothing = other.get(f"/v1/assets/{empty}", params=params)
            assert response.status_code == nothing.status_code == 404
            # The same answer as for a collection that does not exist, but for its name.
            assert _without(response.json(), collection) == _without(nothing.json(), empty)
            assert "secret" not in response.text
    anonymous = httpx.get(f"{api_process.url}/v1/assets/{collection}", params={"order": "taken_at"})
    assert anonymous.status_code == 401
    assert "secret" not in anonymous.text and "next_cursor" not in anonymous.text


def _without(problem: dict[str, Any], collection: str) -> dict[str, Any]:
    """A problem body with the collection's name (the caller's own words) taken out."""
    return {
        name: value.replace(collection, "<collection>") if isinstance(value, str) else value
        for name, value in problem.items()
        if name != "trace_id"  # each request's own
    }
