"""The size of the IngestJobs a request makes is checked by the API, as etcd stores them:
a 2,000-item ingest whose names the apiserver escapes ('<' is six bytes stored) used to
answer 503 "apiserver unavailable", which a client retries for ever.

The API's jobs now name their items (an object of EMULSION_INGESTS) instead of holding
them: a frame of a few KB whatever the items. The estimate is compared with the bytes
etcd really holds (read from etcd itself) and with what the apiserver really refuses
(jobs written with kubectl still hold their items inline).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulsion_api import jobs
from emulsion_api.apiserver import Kube, KubeFailure, _translate
from emulsion_api.errors import ApiError
from emulsion_contracts import crd, jobrecords, keys, natsauth
from emulsion_contracts.ingestjob import IngestJob, ItemsRef
from emulsion_devstack.stack import Endpoints
from emulsion_runtime import kube as runtime_kube
from emulsion_runtime import records_store
from emulsion_runtime.ingestjobs import ApiServer

from .conftest import NAMESPACE, ApiProcess, list_jobs, new_collection


def etcd_bytes(stack: Endpoints, name: str) -> int:
    """The length of the value etcd holds for IngestJob `name` (its v3 JSON gateway)."""
    key = f"/registry/{crd.GROUP}/{crd.PLURAL}/{NAMESPACE}/{name}"
    answer = httpx.post(
        f"{stack.etcd_url}/v3/kv/range",
        json={"key": base64.b64encode(key.encode()).decode()},
        timeout=30,
    )
    answer.raise_for_status()
    [found] = answer.json()["kvs"]
    return len(base64.b64decode(found["value"]))


def remove(custom: Any, name: str) -> None:
    # No controller runs here to take its finalizer off.
    custom.patch_namespaced_custom_object(
        crd.GROUP, crd.VERSION, NAMESPACE, crd.PLURAL, name, {"metadata": {"finalizers": None}}
    )
    custom.delete_namespaced_custom_object(crd.GROUP, crd.VERSION, NAMESPACE, crd.PLURAL, name)


# Characters by what they cost stored: ASCII 1 byte, '<' '>' '&' and U+2028 (a line
# separator, allowed inside a name) 6 as Go escapes them, '"' 2, CJK 3, emoji 4.
_characters = st.sampled_from(["a", "<", ">", "&", "\u2028", "日", "😀", "é", " ", '"', "'"])


def _names(count: int, stem: str) -> list[str]:
    """`count` distinct valid names built on `stem`, as long as the byte limit allows."""
    names = []
    for index in range(count):
        tail = f"-{index:05d}"
        room = keys.ASSET_NAME_MAX - len(tail)
        body = stem
        while len(body.encode()) > room:
            body = body[:-1]
        name = (body.strip() or "x") + tail
        names.append(keys.check_asset_name(name))
    return names


def minted(count: int) -> list[str]:
    """`count` versions in order, as the shared clock mints them."""
    return [keys.new_ulid(millis=1_700_000_000_000 + part) for part in range(count)]


def _plan(names: list[str], collection: str) -> jobs.JobPlan:
    items = [
        jobs.PlannedItem(keys.staging_key(collection, keys.new_ulid(), "IMG_0001.jpg"), name)
        for name in names
    ]
    return jobs.JobPlan(NAMESPACE, collection, "default", items, {})


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    count=st.integers(min_value=1, max_value=crd.MAX_ITEMS * 2),
    stem=st.text(_characters, min_size=1, max_size=keys.ASSET_NAME_MAX),
)
def test_the_estimate_is_never_below_what_etcd_stores_and_every_part_is_accepted(
    stack: Endpoints, custom: Any, count: int, stem: str
) -> None:
    plan = _plan(_names(count, stem), new_collection())
    parts = jobs.plan_parts(plan, minted(jobs.part_count(plan.items)))
    refs = [
        ItemsRef(
            name=jobrecords.items_object_name(NAMESPACE, part.name),
            sha256=hashlib.sha256(jobrecords.encode_items(part.items)).hexdigest(),
            count=len(part.items),
        )
        for part in parts
    ]
    bodies = jobs.build_jobs(plan, parts, refs)
    assert sum(body["spec"]["itemsRef"]["count"] for body in bodies) == count
    for part in parts:
        assert len(jobrecords.encode_items(part.items)) <= jobs.MAX_ITEMS_BYTES
    for body in bodies:
        estimate = jobs.stored_size(body)
        # The job is a frame of a few KB, whatever its items.
        assert estimate <= 4 * 1024
        name = body["metadata"]["name"]
        custom.create_namespaced_custom_object(crd.GROUP, crd.VERSION, NAMESPACE, crd.PLURAL, body)
        try:
            stored = etcd_bytes(stack, name)
        finally:
            remove(custom, name)
        assert stored <= estimate
        # ... and not so far above that jobs are split for nothing.
        assert estimate - stored <= jobs.SERVER_FIELDS_BYTES


def _one_job(count: int, asset_of: Any) -> dict[str, Any]:
    """A body of `count` items in one job, past the API's own split."""
    version = keys.new_ulid()
    return {
        "apiVersion": crd.API_VERSION,
        "kind": crd.KIND,
        "metadata": {"name": version.lower(), "namespace": NAMESPACE},
        "spec": {
            "collection": "c1",
            "profile": "default",
            "version": version,
            "items": [
                {
                    "source": keys.staging_key("c1", keys.new_ulid(), "a.jpg"),
                    "asset": asset_of(index),
                }
                for index in range(count)
            ],
        },
    }


def _create(stack: Endpoints, body: dict[str, Any]) -> ApiError | None:
    """`body` created through the API's own apiserver client; the error it answers."""

    async def attempt() -> ApiError | None:
        configuration = runtime_kube.api_client(stack.kubeconfig).configuration
        kube = Kube(ApiServer(configuration, 2), NAMESPACE, 1)
        try:
            await kube.create(body)
        except ApiError as error:
            return error
        finally:
            await kube.close()
        return None

    return asyncio.run(attempt())


@pytest.mark.parametrize("count", [1200, 1700, 2000])
def test_what_etcd_refuses_the_estimate_puts_over_the_limit_and_the_api_answers_413(
    stack: Endpoints, custom: Any, count: int
) -> None:
    body = _one_job(count, lambda index: "<" * 145 + f"{index:05d}")
    refused = _create(stack, body)
    if refused is None:
        assert etcd_bytes(stack, body["metadata"]["name"]) <= jobs.stored_size(body)
        remove(custom, body["metadata"]["name"])
        return
    # etcd's "request is too large" (a 500 from the apiserver) is the request's fault.
    assert (refused.status, refused.code) == (413, "job_too_large")
    assert "request is too large" in refused.message
    # The estimate (never below the stored size) is over etcd's limit less its own framing.
    assert jobs.stored_size(body) > jobs.ETCD_REQUEST_MAX - 2 * 1024
    # The API itself would never have sent it: split by size, every part fits.
    plan = jobs.JobPlan(
        NAMESPACE,
        "c1",
        "default",
        [jobs.PlannedItem(item["source"], item["asset"]) for item in body["spec"]["items"]],
        {},
    )
    parts = jobs.plan_parts(plan, minted(jobs.part_count(plan.items)))
    assert all(len(jobrecords.encode_items(p.items)) <= jobs.MAX_ITEMS_BYTES for p in parts)


def test_the_apiservers_size_and_validation_refusals_are_4xx_never_503(stack: Endpoints) -> None:
    # Over the apiserver's 3 MiB request limit: its own 413, before any validation.
    huge = _one_job(1000, lambda index: "x" * 3500)
    refused = _create(stack, huge)
    assert refused is not None and (refused.status, refused.code) == (413, "job_too_large")
    # A field over its schema's length: 422 "Too long".
    long_name = _one_job(1, lambda index: "x" * (keys.ASSET_NAME_MAX + 1))
    refused = _create(stack, long_name)
    assert refused is not None and (refused.status, refused.code) == (422, "invalid_request")
    assert "Too long" in refused.message or "at most" in refused.message


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        (500, "etcdserver: request is too large", (413, "job_too_large")),
        (413, "Request entity too large: limit is 3145728", (413, "job_too_large")),
        (
            422,
            "spec.items[0].asset: Too long: may not be more than 200 bytes",
            (422, "invalid_request"),
        ),
        (400, "the body is not valid JSON", (422, "invalid_request")),
        (429, "throttled", (429, "overloaded")),
        (500, "etcdserver: leader changed", (503, "unavailable")),
        (503, "the server is currently unable to handle the request", (503, "unavailable")),
    ],
)
def test_apiserver_answers_map_to_what_a_client_should_do(
    status: int, reason: str, expected: tuple[int, str]
) -> None:
    error = _translate(KubeFailure(status, {}, reason))
    assert (error.status, error.code) == expected


def test_the_issues_2000_items_named_with_150_lt_are_accepted_in_parts(
    api: httpx.Client, api_process: ApiProcess, stage: Any, custom: Any, stack: Endpoints
) -> None:
    collection = new_collection()
    uploads = stage(crd.MAX_ITEMS, collection)
    items = [
        {"upload_key": key, "asset": "<" * 150 + f"{index:05d}"}
        for index, key in enumerate(uploads)
    ]
    answer = api.post("/v1/ingests", json={"collection": collection, "items": items})
    assert answer.status_code == 202, answer.text
    made = list_jobs(custom, f"{crd.LABEL_COLLECTION}={jobs.collection_label(collection)}")
    # 1.9 MB as etcd would store the items inline; 0.5 MB as the item list: one job.
    assert sum(job["spec"]["itemsRef"]["count"] for job in made) == crd.MAX_ITEMS
    assert all("items" not in job["spec"] for job in made)
    for job in made:
        assert etcd_bytes(stack, job["metadata"]["name"]) <= 4 * 1024
        remove(custom, job["metadata"]["name"])

    async def stored_lists() -> list[str]:
        connection = await stack.nats_connect(natsauth.CONTROLLER_IDENTITY)
        try:
            js = connection.jetstream()
            found: list[str] = []
            for job in made:
                ref = IngestJob.read(job).spec.items_ref
                assert ref is not None
                found += [item.asset for item in await records_store.get_items(js, ref)]
            return found
        finally:
            await connection.drain()

    stored_names = asyncio.run(stored_lists())
    assert sorted(stored_names) == sorted(item["asset"] for item in items)
