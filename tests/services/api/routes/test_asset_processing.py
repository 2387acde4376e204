"""`GET /v1/assets/{collection}/{asset}` while an ingest is making the asset: it says so
and names the ingest, serves the earlier version where there is one (202 with the ingest
where there is none), stops saying so once the ingest has the item's outcome or has
finished, and tells another tenant nothing.

No controller runs here: the job stays unfinished until the test writes its status."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from emulsion_api import processing
from emulsion_devstack.stack import Endpoints

from ..conftest import (
    TENANT_A_PREFIX,
    TENANT_A_TOKEN,
    TENANT_B_TOKEN,
    ApiProcess,
    commit_manifest,
    patch_status,
)
from .test_cancel_and_retry import ingest

Stage = Callable[..., list[str]]


def test_an_asset_being_made_says_so_and_serves_its_earlier_version(
    api_process: ApiProcess, custom: Any, s3: Any, stack: Endpoints, stage: Stage
) -> None:
    collection = f"{TENANT_A_PREFIX}processing-{time.time_ns() % 10**9}"
    earlier = commit_manifest(s3, stack.bucket, collection, "p0.jpg")
    with (
        api_process.client(TENANT_A_TOKEN) as owner,
        api_process.client(TENANT_B_TOKEN) as other,
        httpx.Client(base_url=api_process.url, timeout=60) as anonymous,
    ):
        assert owner.get(f"/v1/assets/{collection}/p0.jpg").json()["processing"] is False
        name, _ = ingest(owner, stage, collection, 2)  # items p0.jpg and p1.jpg
        time.sleep(processing.CACHE_SECONDS + 0.2)

        served = owner.get(f"/v1/assets/{collection}/p0.jpg")
        first = owner.get(f"/v1/assets/{collection}/p1.jpg")
        polled = owner.get(
            f"/v1/assets/{collection}/p0.jpg", headers={"If-None-Match": served.headers["ETag"]}
        )

        assert served.status_code == 200
        body = served.json()
        assert (body["version"], body["processing"]) == (earlier.version, True)
        assert body["processing_ingest"] == name
        assert polled.status_code == 200  # never 304 while it is being made
        assert first.status_code == 202
        assert first.json() == {
            "collection": collection,
            "asset": "p1.jpg",
            "processing": True,
            "processing_ingest": name,
            "status_url": f"/v1/ingests/{name}",
        }
        # Another tenant and no token learn nothing of it.
        unknown = other.get(f"/v1/assets/{collection}/nothing.jpg")
        for asset in ("p0.jpg", "p1.jpg"):
            answer = other.get(f"/v1/assets/{collection}/{asset}")
            _same_as_unknown_asset(answer, unknown, asset)
            refused = anonymous.get(f"/v1/assets/{collection}/{asset}")
            assert (refused.status_code, refused.json()["code"]) == (401, "unauthorized")

        patch_status(custom, name, {"phase": "Failed", "total": 2, "succeeded": 0, "failed": 2})
        time.sleep(processing.CACHE_SECONDS + 0.2)

        done = owner.get(f"/v1/assets/{collection}/p0.jpg").json()
        assert (done["processing"], done["processing_ingest"]) == (False, None)
        assert owner.get(f"/v1/assets/{collection}/p1.jpg").status_code == 404


def _same_as_unknown_asset(answer: httpx.Response, unknown: httpx.Response, asset: str) -> None:
    assert answer.status_code == unknown.status_code == 404
    mine, theirs = answer.json(), unknown.json()
    for problem in (mine, theirs):
        problem.pop("trace_id", None)
        problem.pop("instance", None)
    assert mine == {**theirs, "detail": theirs["detail"].replace("nothing.jpg", asset)}
