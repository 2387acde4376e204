"""A request over `crd.MAX_ITEMS` items: split into IngestJobs of one batch, read as one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from emulsion_contracts import crd

from ..conftest import ItemsOf, list_jobs, new_collection, patch_status


def test_oversized_request_is_split_into_one_batch_and_aggregated(
    items_of: ItemsOf, api: httpx.Client, custom: Any, stage: Callable[..., list[str]]
) -> None:
    count = crd.MAX_ITEMS + 1
    collection = new_collection()
    staged = stage(count, collection)

    response = api.post(
        "/v1/ingests",
        json={"collection": collection, "items": [{"upload_key": key} for key in staged]},
    )

    assert response.status_code == 202, response.text
    body = response.json()
    batch = body["batch"]
    assert body["name"] == batch
    assert response.headers["Location"] == body["status_url"] == f"/v1/batches/{batch}"
    parts = sorted(
        list_jobs(custom, f"{crd.LABEL_BATCH}={batch}"), key=lambda j: j["spec"]["version"]
    )
    assert [p["metadata"]["name"] for p in parts] == body["jobs"]
    assert [len(items_of(p)) for p in parts] == [crd.MAX_ITEMS, 1]
    assert [item["source"] for p in parts for item in items_of(p)] == staged
    assert all(p["metadata"]["labels"][crd.LABEL_COLLECTION] == collection for p in parts)
    # Each request item says which job and which index inside it makes it.
    last = body["items"][-1]
    assert (last["index"], last["job"], last["job_index"]) == (
        crd.MAX_ITEMS,
        parts[1]["metadata"]["name"],
        0,
    )

    patch_status(
        custom, parts[0]["metadata"]["name"], {"phase": "Succeeded", "succeeded": crd.MAX_ITEMS}
    )
    patch_status(custom, parts[1]["metadata"]["name"], {"phase": "Processing"})
    running = api.get(f"/v1/batches/{batch}").json()
    assert (running["phase"], running["finished"], running["total"]) == ("Processing", False, count)
    assert running["progress"] == f"{crd.MAX_ITEMS}/{count}"

    patch_status(custom, parts[1]["metadata"]["name"], {"phase": "Failed", "failed": 1})
    done = api.get(f"/v1/batches/{batch}").json()
    assert (done["phase"], done["finished"], done["failed"]) == ("PartiallyFailed", True, 1)
    assert [job["name"] for job in done["jobs"]] == body["jobs"]


def test_unknown_batch_is_404(api: httpx.Client) -> None:
    response = api.get("/v1/batches/nothing")
    assert response.status_code == 404 and response.json()["code"] == "not_found"
