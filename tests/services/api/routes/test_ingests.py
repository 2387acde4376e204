"""`/v1/ingests` on the real apiserver and MinIO: upload, accept, read back, follow."""

from __future__ import annotations

import json
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from emulsion_api import jobs
from emulsion_contracts import crd, keys
from emulsion_devstack.stack import Endpoints
from tests.uploading import post_form, presign, uploaded

from ..conftest import (
    TENANT_A_PREFIX,
    TENANT_A_TOKEN,
    ApiProcess,
    ItemsOf,
    commit_manifest,
    get_job,
    list_jobs,
    new_collection,
    patch_status,
    wait_for,
)

Stage = Callable[..., list[str]]

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def ingest(api: httpx.Client, staged: list[str], collection: str, **extra: Any) -> httpx.Response:
    body = {"collection": collection, "items": [{"upload_key": key} for key in staged], **extra}
    return api.post("/v1/ingests", json=body)


def test_presigned_upload_then_ingest_is_accepted_and_creates_the_job(
    items_of: ItemsOf, api: httpx.Client, custom: Any, s3: Any, stack: Endpoints
) -> None:
    form = presign(api, (collection := new_collection()), "My Photo (1).JPG", 5)
    assert form["key"] == f"staging/{collection}/{form['upload_id']}/My-Photo-1.jpg"
    posted = post_form(form, b"\xff\xd8abc")
    assert posted.status_code in (200, 201, 204), posted.text
    assert s3.head_object(Bucket=stack.bucket, Key=form["key"])["ContentLength"] == 5

    response = api.post(
        "/v1/ingests",
        json={"collection": collection, "items": [{"upload_key": form["key"]}]},
        headers={"traceparent": TRACEPARENT},
    )

    assert response.status_code == 202, response.text
    body = response.json()
    name = body["name"]
    assert response.headers["Location"] == f"/v1/ingests/{name}" == body["status_url"]
    assert body["jobs"] == [name] and body["batch"] is None
    assert body["items"] == [
        {
            "index": 0,
            "job": name,
            "job_index": 0,
            "upload_key": form["key"],
            "asset": "My Photo (1).JPG",
        }
    ]
    job = get_job(custom, name)
    assert job["spec"]["collection"] == collection
    assert job["spec"]["profile"] == "default"
    assert "items" not in job["spec"] and job["spec"]["itemsRef"]["count"] == 1
    assert items_of(job) == [{"source": form["key"], "asset": "My Photo (1).JPG"}]
    version = job["spec"]["version"]
    assert re.fullmatch(keys.ULID_PATTERN, version) and name == version.lower()
    labels, annotations = job["metadata"]["labels"], job["metadata"]["annotations"]
    assert labels[crd.LABEL_COLLECTION] == collection
    assert crd.LABEL_BATCH not in labels
    # The request span continues the caller's trace and is recorded for the controller.
    traceparent = annotations[crd.ANNOTATION_TRACEPARENT]
    assert re.fullmatch(rf"00-{TRACE_ID}-[0-9a-f]{{16}}-01", traceparent), traceparent
    assert traceparent != TRACEPARENT


def test_names_the_safe_name_folds_together_stay_different_assets(
    items_of: ItemsOf, api: httpx.Client, custom: Any
) -> None:
    """日本.jpg and 中国.jpg were once both the asset 'file.jpg'."""
    names = ["日本.jpg", "中国.jpg", "Фото 1.jpg", "photo 1.JPG", "photo 1.jpg"]
    collection = new_collection()
    staged = [uploaded(api, collection, name, b"\xff\xd8ab")["key"] for name in names]
    assert len({key.rsplit("/", 1)[1] for key in staged}) < len(names)  # the safe names clash

    response = ingest(api, staged, collection)

    assert response.status_code == 202, response.text
    assert [item["asset"] for item in response.json()["items"]] == names
    job = get_job(custom, response.json()["name"])
    assert [item["asset"] for item in items_of(job)] == names


def test_an_explicit_unicode_asset_name_is_accepted_in_nfc(
    items_of: ItemsOf, api: httpx.Client, custom: Any, stage: Stage
) -> None:
    collection = new_collection()
    staged = stage(2, collection)
    decomposed = unicodedata.normalize("NFD", "Café 1.jpg")
    body = {
        "collection": collection,
        "items": [
            {"upload_key": staged[0], "asset": "日本.jpg"},
            {"upload_key": staged[1], "asset": decomposed},
        ],
    }

    response = api.post("/v1/ingests", json=body)

    assert response.status_code == 202, response.text
    job = get_job(custom, response.json()["name"])
    assert [item["asset"] for item in items_of(job)] == ["日本.jpg", "Café 1.jpg"]


def test_status_shows_counts_item_states_failures_and_live_outputs(
    api: httpx.Client, custom: Any, s3: Any, stack: Endpoints, stage: Stage
) -> None:
    collection = new_collection()
    accepted = ingest(api, stage(3, collection), collection).json()
    name = accepted["name"]
    version = get_job(custom, name)["spec"]["version"]
    # The controller's status after item 0 succeeded and item 2 failed; item 0's processor
    # committed the manifest, item 1 is still running.
    commit_manifest(s3, stack.bucket, collection, "IMG_00000.jpg", keys.version_id(version, 0))
    patch_status(
        custom,
        name,
        {
            "phase": "Processing",
            "total": 3,
            "succeeded": 1,
            "failed": 1,
            "progress": "2/3",
            "succeededIndexes": "0",
            "failedIndexes": "2",
            "failures": [{"index": 2, "asset": "IMG_00002.jpg", "reason": "DecompressionBomb"}],
        },
    )

    status = api.get(f"/v1/ingests/{name}")

    assert status.status_code == 200, status.text
    body = status.json()
    assert (body["phase"], body["finished"], body["progress"]) == ("Processing", False, "2/3")
    assert (body["total"], body["succeeded"], body["failed"]) == (3, 1, 1)
    assert body["failures"] == [
        {
            "index": 2,
            "asset": "IMG_00002.jpg",
            "reason": "DecompressionBomb",
            "message": None,
            "attempts": None,
        }
    ]
    states = [(item["asset"], item["state"], item["reason"]) for item in body["items"]]
    assert states == [
        ("IMG_00000.jpg", "succeeded", None),
        ("IMG_00001.jpg", "pending", None),
        ("IMG_00002.jpg", "failed", "DecompressionBomb"),
    ]
    done = body["items"][0]
    assert done["version"] == keys.version_id(version, 0) and done["live"] is True
    assert {output["style"] for output in done["outputs"]} == {"large", "thumb"}
    # The URLs are usable as they are: presigned GETs against the store.
    for url in [done["original"]["url"], *(output["url"] for output in done["outputs"])]:
        assert httpx.get(url).content == b"jpg"
    assert body["items"][1]["outputs"] == [] and body["items"][1]["original"] is None

    # Outcomes alone: the same states, versions and reasons, with no URL and no asset read.
    s3.delete_object(Bucket=stack.bucket, Key=keys.manifest_key(collection, "IMG_00000.jpg"))
    lean = api.get(f"/v1/ingests/{name}", params={"urls": "false"})

    assert lean.status_code == 200, lean.text
    lean_body = lean.json()
    assert {k: v for k, v in lean_body.items() if k != "items"} == {
        k: v for k, v in body.items() if k != "items"
    }
    assert [
        (item["asset"], item["state"], item["version"], item["reason"])
        for item in lean_body["items"]
    ] == [(item["asset"], item["state"], item["version"], item["reason"]) for item in body["items"]]
    for item in lean_body["items"]:
        assert (item["live"], item["original"], item["outputs"]) == (None, None, [])


def test_every_failed_item_has_its_reason_beyond_the_listed_examples(
    api: httpx.Client, custom: Any, stage: Stage
) -> None:
    """Status lists a few failures as examples and counts all of them per reason with
    their index ranges; the API gives each failed item its reason from those."""
    collection = new_collection()
    name = ingest(api, stage(4, collection), collection).json()["name"]
    patch_status(
        custom,
        name,
        {
            "phase": "PartiallyFailed",
            "total": 4,
            "succeeded": 1,
            "failed": 3,
            "progress": "4/4",
            "succeededIndexes": "0",
            "failedIndexes": "1-3",
            "failures": [{"index": 1, "asset": "IMG_00001.jpg", "reason": "NotAnImage"}],
            "failureReasons": [
                {"reason": "DecompressionBomb", "count": 2, "indexes": "2-3"},
                {"reason": "NotAnImage", "count": 1, "indexes": "1"},
            ],
        },
    )

    body = api.get(f"/v1/ingests/{name}", params={"urls": "false"}).json()

    assert body["failures"] == [
        {
            "index": 1,
            "asset": "IMG_00001.jpg",
            "reason": "NotAnImage",
            "message": None,
            "attempts": None,
        }
    ]
    assert [(item["state"], item["reason"]) for item in body["items"]] == [
        ("succeeded", None),
        ("failed", "NotAnImage"),
        ("failed", "DecompressionBomb"),
        ("failed", "DecompressionBomb"),
    ]


def test_succeeded_item_whose_version_was_replaced_is_not_live(
    api: httpx.Client, custom: Any, s3: Any, stack: Endpoints, stage: Stage
) -> None:
    collection = new_collection()
    name = ingest(api, stage(1, collection), collection).json()["name"]
    # A later upload of the same asset owns the manifest now.
    commit_manifest(s3, stack.bucket, collection, "IMG_00000.jpg")
    patch_status(custom, name, {"phase": "Succeeded", "succeededIndexes": "0", "succeeded": 1})

    item = api.get(f"/v1/ingests/{name}").json()["items"][0]

    assert (item["state"], item["live"], item["outputs"]) == ("succeeded", False, [])


def test_unknown_ingest_is_404(api: httpx.Client) -> None:
    response = api.get("/v1/ingests/no-such-job")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_retry_with_idempotency_key_returns_the_same_job(
    api: httpx.Client, custom: Any, stage: Stage
) -> None:
    collection = new_collection()
    body = {
        "collection": collection,
        "items": [{"upload_key": key} for key in stage(2, collection)],
    }
    headers = {"Idempotency-Key": f"retry-{collection}"}

    first = api.post("/v1/ingests", json=body, headers=headers)
    again = api.post("/v1/ingests", json=body, headers=headers)

    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    made = list_jobs(custom, f"{crd.LABEL_COLLECTION}={collection}")
    assert [job["metadata"]["name"] for job in made] == [first.json()["name"]]
    # The key is kept by its hash only (the label), never as written: the job stays small.
    assert crd.ANNOTATION_IDEMPOTENCY_KEY not in made[0]["metadata"]["annotations"]
    assert jobs.LABEL_IDEMPOTENCY in made[0]["metadata"]["labels"]
    # Another body under the same key is refused; a new key makes a new job.
    other = api.post("/v1/ingests", json={**body, "items": body["items"][:1]}, headers=headers)
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    fresh = api.post("/v1/ingests", json=body, headers={"Idempotency-Key": f"new-{collection}"})
    assert fresh.status_code == 202 and fresh.json()["name"] != first.json()["name"]
    assert len(list_jobs(custom, f"{crd.LABEL_COLLECTION}={collection}")) == 2


def test_concurrent_retries_with_one_key_make_one_job(
    api_process: ApiProcess, custom: Any, stage: Stage
) -> None:
    collection = new_collection()
    body = {
        "collection": collection,
        "items": [{"upload_key": key} for key in stage(1, collection)],
    }
    headers = {"Idempotency-Key": f"race-{collection}"}
    results: list[httpx.Response] = []

    def post() -> None:
        with api_process.client() as session:
            results.append(session.post("/v1/ingests", json=body, headers=headers))

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [r.status_code for r in results] == [202] * 4
    assert len({r.json()["name"] for r in results}) == 1
    remaining = wait_for(
        "the losing requests' jobs to be deleted",
        lambda: [
            j
            for j in list_jobs(custom, f"{crd.LABEL_COLLECTION}={collection}")
            if not j["metadata"].get("deletionTimestamp")
        ],
    )
    assert [job["metadata"]["name"] for job in remaining] == [results[0].json()["name"]]


@pytest.fixture
def watch_count(api_process: ApiProcess) -> Callable[[], float]:
    def count() -> float:
        metrics = httpx.get(api_process.metrics_url).text
        found = re.search(r"^emulsion_api_open_watches (\S+)$", metrics, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    return count


def test_long_poll_returns_when_the_status_changes(
    api_process: ApiProcess,
    api: httpx.Client,
    custom: Any,
    stage: Stage,
    watch_count: Callable[[], float],
) -> None:
    name = ingest(api, stage(1, collection := new_collection()), collection).json()["name"]
    answers: list[httpx.Response] = []

    def long_poll() -> None:
        with api_process.client() as session:
            answers.append(session.get(f"/v1/ingests/{name}", params={"wait": 50}))

    poller = threading.Thread(target=long_poll)
    started = time.monotonic()
    poller.start()
    # The API holds a watch from the version it read; a change made after that is seen.
    wait_for("the long poll to open its watch", lambda: watch_count() >= 1)
    patch_status(custom, name, {"phase": "Processing", "total": 1, "progress": "0/1"})
    poller.join(timeout=55)

    assert answers, "the long poll did not answer"
    assert answers[0].status_code == 200
    assert answers[0].json()["phase"] == "Processing"
    assert time.monotonic() - started < 50, "answered only when the wait ran out"


def test_long_poll_without_change_answers_when_the_wait_ends(
    api: httpx.Client, stage: Stage
) -> None:
    name = ingest(api, stage(1, collection := new_collection()), collection).json()["name"]
    started = time.monotonic()

    answer = api.get(f"/v1/ingests/{name}", params={"wait": 1.5})

    assert answer.status_code == 200 and answer.json()["phase"] == "Pending"
    assert time.monotonic() - started >= 1.0


def _events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    kind, data = "", ""
    for line in lines:
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = line.removeprefix("data: ")
        elif line == "" and kind:
            yield kind, json.loads(data)
            kind, data = "", ""


def test_event_stream_follows_the_job_and_ends_when_it_ends(
    api: httpx.Client, custom: Any, stage: Stage
) -> None:
    name = ingest(api, stage(2, collection := new_collection()), collection).json()["name"]
    seen: list[tuple[str, str, str]] = []

    with api.stream("GET", f"/v1/ingests/{name}/events") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        for kind, data in _events(stream.iter_lines()):
            seen.append((kind, data["phase"], data["progress"]))
            if len(seen) == 1:
                patch_status(custom, name, {"phase": "Processing", "progress": "1/2"})
            elif len(seen) == 2:
                patch_status(
                    custom,
                    name,
                    {"phase": "Succeeded", "progress": "2/2", "succeeded": 2},
                )
        # The loop ends only because the server closed the stream.

    assert seen == [
        ("status", "Pending", "0/2"),
        ("status", "Processing", "1/2"),
        ("end", "Succeeded", "2/2"),
    ]


def test_event_stream_of_unknown_job_is_404(api: httpx.Client) -> None:
    assert api.get("/v1/ingests/nothing-here/events").status_code == 404


@pytest.mark.parametrize("count", [3, 45], ids=["checked one by one", "checked by listing"])
def test_an_upload_missing_among_many_is_named_and_nothing_is_created(
    count: int, api: httpx.Client, custom: Any, s3: Any, stack: Endpoints, stage: Stage
) -> None:
    collection = new_collection()
    staged = stage(count, collection)
    gone = staged[count // 2]
    s3.delete_object(Bucket=stack.bucket, Key=gone)

    response = ingest(api, staged, collection)

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "upload_missing"
    assert response.json()["errors"] == [
        {"field": "body.items", "message": f"{gone} was not uploaded"}
    ]
    assert list_jobs(custom, f"{crd.LABEL_COLLECTION}={collection}") == []
    # An upload a job has claimed (promoted) is answered the same way, by HEAD or listing.
    s3.put_object(Bucket=stack.bucket, Key=gone, Body=b"x")
    claimed = staged[-1]
    s3.put_object(Bucket=stack.bucket, Key=keys.claim_key(claimed), Body=b"{}")
    again = ingest(api, staged, collection)
    assert again.status_code == 422, again.text
    assert again.json()["errors"] == [
        {"field": "body.items", "message": f"{claimed} was not uploaded"}
    ]
    s3.delete_object(Bucket=stack.bucket, Key=keys.claim_key(claimed))
    # With the upload back in place, the same request is accepted.
    s3.put_object(Bucket=stack.bucket, Key=gone, Body=b"x")
    assert ingest(api, staged, collection).status_code == 202


def _valid_key(collection: str = "c") -> str:
    return keys.staging_key(collection, keys.new_ulid(), "IMG_1.jpg")


BAD_REQUESTS: dict[str, tuple[Any, int, str]] = {
    "missing upload": (
        {"collection": "c", "items": [{"upload_key": "MISSING"}]},
        422,
        "upload_missing",
    ),
    "key outside staging": (
        {"collection": "c", "items": [{"upload_key": "originals/c/a/v/IMG_1.jpg"}]},
        422,
        "invalid_request",
    ),
    "manifest key": (
        {"collection": "c", "items": [{"upload_key": "assets/c/a.json"}]},
        422,
        "invalid_request",
    ),
    "dot-dot key": (
        {"collection": "c", "items": [{"upload_key": "staging/../originals/x.jpg"}]},
        422,
        "invalid_request",
    ),
    "dot-dot in key name": (
        {"collection": "c", "items": [{"upload_key": "DOTS"}]},
        422,
        "invalid_request",
    ),
    "dot asset": (
        {"collection": "c", "items": [{"upload_key": "VALID", "asset": "."}]},
        422,
        "invalid_request",
    ),
    "slash in asset": (
        {"collection": "c", "items": [{"upload_key": "VALID", "asset": "a/b.jpg"}]},
        422,
        "invalid_request",
    ),
    "format character in asset": (
        {"collection": "c", "items": [{"upload_key": "VALID", "asset": "a\u202eb.jpg"}]},
        422,
        "invalid_request",
    ),
    "parent asset": (
        {"collection": "c", "items": [{"upload_key": "VALID", "asset": ".."}]},
        422,
        "invalid_request",
    ),
    "NUL in asset": (
        {"collection": "c", "items": [{"upload_key": "VALID", "asset": "a\x00b.jpg"}]},
        422,
        "invalid_request",
    ),
    "NUL in key": ({"collection": "c", "items": [{"upload_key": "NUL"}]}, 422, "invalid_request"),
    "1000-character asset": (
        {"collection": "c", "items": [{"upload_key": "VALID", "asset": "a" * 1000}]},
        422,
        "invalid_request",
    ),
    "1000-character collection": (
        {"collection": "c" * 1000, "items": [{"upload_key": "VALID"}]},
        422,
        "invalid_request",
    ),
    "slash in collection": (
        {"collection": "a/b", "items": [{"upload_key": "VALID"}]},
        422,
        "invalid_request",
    ),
    "unknown profile": (
        {"collection": "c", "items": [{"upload_key": "VALID"}], "profile": "nope"},
        422,
        "unknown_profile",
    ),
    "empty items": ({"collection": "c", "items": []}, 422, "invalid_request"),
    "too many items": ({"collection": "c", "items": "MANY"}, 422, "too_many_items"),
    "duplicate asset": (
        {
            "collection": "c",
            "items": [{"upload_key": "VALID", "asset": "a"}, {"upload_key": "OTHER", "asset": "a"}],
        },
        422,
        "duplicate_asset",
    ),
    "duplicate upload": (
        {"collection": "c", "items": [{"upload_key": "VALID"}, {"upload_key": "VALID"}]},
        422,
        "duplicate_upload",
    ),
    "another collection's key": (
        {"collection": "c", "items": [{"upload_key": "FOREIGN"}]},
        422,
        "upload_missing",
    ),
    "old layout key": (
        {"collection": "c", "items": [{"upload_key": "LEGACY"}]},
        422,
        "upload_missing",
    ),
    "unknown field": (
        {"collection": "c", "items": [{"upload_key": "VALID"}], "x": 1},
        422,
        "invalid_request",
    ),
    "items not a list": ({"collection": "c", "items": "IMG_1.jpg"}, 422, "invalid_request"),
    "malformed JSON": ('{"collection": "c", "items": [', 400, "malformed_json"),
    "body over the limit": ("HUGE", 413, "body_too_large"),
}


def _materialise(value: Any, staged: str, other: str = "") -> Any:
    """Fill the placeholders: real keys are only known once the test has staged them."""
    replacements = {
        "MISSING": _valid_key(),
        "FOREIGN": _valid_key("d"),
        "LEGACY": f"staging/{keys.new_ulid()}/IMG_1.jpg",
        "VALID": staged,
        "OTHER": other,
        "DOTS": staged.rsplit("/", 1)[0] + "/a..b.jpg",
        "NUL": staged + "\x00",
        "MANY": [{"upload_key": staged, "asset": f"a{i}"} for i in range(10_001)],
    }
    if isinstance(value, dict):
        return {k: _materialise(v, staged, other) for k, v in value.items()}
    if isinstance(value, list):
        return [_materialise(v, staged, other) for v in value]
    return replacements.get(value, value) if isinstance(value, str) else value


@pytest.mark.parametrize("case", list(BAD_REQUESTS), ids=list(BAD_REQUESTS))
def test_bad_request_is_refused_with_its_code_and_creates_nothing(
    case: str, api: httpx.Client, custom: Any, stage: Stage
) -> None:
    body, status, code = BAD_REQUESTS[case]
    staged, other = stage(2, "c")
    before = len(list_jobs(custom))
    if body == "HUGE":
        response = api.post(
            "/v1/ingests",
            content=b'{"collection": "c", "items": [' + b" " * (5 * 1024 * 1024) + b"]}",
            headers={"Content-Type": "application/json"},
        )
    elif isinstance(body, str):
        response = api.post(
            "/v1/ingests", content=body, headers={"Content-Type": "application/json"}
        )
    else:
        response = api.post("/v1/ingests", json=_materialise(body, staged, other))

    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert set(problem) == {
        "type",
        "title",
        "status",
        "detail",
        "instance",
        "code",
        "trace_id",
        "errors",
    }
    assert (problem["status"], problem["type"]) == (status, f"urn:emulsion:problem:{code}")
    assert problem["instance"] == "/v1/ingests"
    assert len(list_jobs(custom)) == before


# -- listing ------------------------------------------------------------------------------


def _listed(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    """Every job `GET /v1/ingests` lists with `params`, following the cursors."""
    listed: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = client.get(
            "/v1/ingests", params={**params, **({"cursor": cursor} if cursor else {})}
        )
        assert page.status_code == 200, page.text
        listed += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return listed


def test_ingests_of_a_collection_list_in_pages(api: httpx.Client, stage: Stage) -> None:
    collection = new_collection()
    made = [ingest(api, stage(1, collection), collection).json()["name"] for _ in range(3)]
    other = ingest(api, stage(1, other_collection := new_collection()), other_collection).json()[
        "name"
    ]

    listed = [job["name"] for job in _listed(api, collection=collection, limit=2)]

    assert listed == sorted(made)  # oldest first: names are time-ordered ULIDs
    assert other not in listed
    first = api.get("/v1/ingests", params={"collection": collection}).json()["items"][0]
    assert (first["collection"], first["phase"], first["total"]) == (collection, "Pending", 1)


def test_ingest_lists_keep_to_the_tokens_scopes(
    api: httpx.Client, api_process: ApiProcess, stage: Stage
) -> None:
    theirs = new_collection()
    ingest(api, stage(1, theirs), theirs)
    mine = f"{TENANT_A_PREFIX}{keys.new_ulid().lower()[-8:]}"
    made = ingest(api, stage(1, mine), mine).json()["name"]

    with api_process.client(TENANT_A_TOKEN) as tenant:
        assert tenant.get("/v1/ingests", params={"collection": theirs}).status_code == 404
        everything = _listed(tenant, limit=100)

    assert made in [job["name"] for job in everything]
    assert all(job["collection"].startswith(TENANT_A_PREFIX) for job in everything)


def test_a_bad_ingest_cursor_is_refused(api: httpx.Client) -> None:
    response = api.get("/v1/ingests", params={"cursor": "bm90IGEgY29udGludWUgdG9rZW4"})
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_cursor"


def test_a_body_that_is_not_utf8_is_malformed_json(api: httpx.Client) -> None:
    # FastAPI refuses it before JSON parsing; the document names one code for a 400.
    response = api.post(
        "/v1/ingests", content=b"\xff\xfe\x00{", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "malformed_json"


def test_concurrent_small_ingests_share_jobs_and_each_is_answered_with_its_own_items(
    items_of: ItemsOf, api_process: ApiProcess, custom: Any, stage: Stage
) -> None:
    """Group commit: requests that arrive while a create is in flight go in the next one."""
    collection = new_collection()
    staged = stage(32, collection)
    start = threading.Barrier(len(staged))

    def post(key: str) -> httpx.Response:
        with api_process.client() as session:
            start.wait()
            return session.post(
                "/v1/ingests", json={"collection": collection, "items": [{"upload_key": key}]}
            )

    with ThreadPoolExecutor(len(staged)) as pool:
        answers = list(pool.map(post, staged))

    assert [answer.status_code for answer in answers] == [202] * len(staged)
    jobs = {job["metadata"]["name"]: job for job in list_jobs(custom)}
    for key, answer in zip(staged, answers, strict=True):
        body = answer.json()
        [item] = body["items"]
        assert (item["index"], item["upload_key"], body["jobs"]) == (0, key, [body["name"]])
        assert answer.headers["Location"] == f"/v1/ingests/{body['name']}"
        # Where the answer says the item is, the job holds it.
        spec = jobs[item["job"]]["spec"]
        assert spec["collection"] == collection
        listed = items_of(jobs[item["job"]])
        assert listed[item["job_index"]] == {"source": key, "asset": item["asset"]}
    made = {answer.json()["name"] for answer in answers}
    assert len(made) < len(staged)  # 32 requests at once: fewer creates than requests
    assert sum(jobs[name]["spec"]["itemsRef"]["count"] for name in made) == len(staged)
