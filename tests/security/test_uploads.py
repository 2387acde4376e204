"""Uploads are owned, and the original is the bytes that were checked, on the real
stack through its public doors: the API over HTTP with two tenants' tokens, MinIO
through presigned forms, and an IngestJob made with the Kubernetes API (as `kubectl`).

The system is the servers and the four services (a stack of this module's own: its
processor would take other tests' work items from a shared stream), plus a second API
holding the tenants' tokens, as the attacks were first reported on.
"""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client, config
from PIL import Image

from emulsion_api.scopes import token_digest
from emulsion_contracts import keys
from emulsion_devstack.stack import Endpoints, LocalStack, s3_client
from tests.jobmaking import create_job
from tests.systems import own_system
from tests.uploading import post_form, uploaded

TENANT_A = secrets.token_urlsafe(24)
TENANT_B = secrets.token_urlsafe(24)
# Tenant A may use every collection whose name starts with "tenant-a-"; B one collection
# and a prefix. Their scopes do not meet.
A_COLLECTION = "tenant-a-photos"
A_OTHER = "tenant-a-other"
B_COLLECTION = "tenant-b"
B_OTHER = "other-b"
NAMESPACE = "default"
JOB_SECONDS = 120


@dataclass(frozen=True)
class System:
    local: LocalStack
    endpoints: Endpoints
    api_url: str
    admin: str
    s3: Any
    jobs: Any  # the IngestJob API, as kubectl uses it

    def api(self, token: str | None) -> httpx.Client:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return httpx.Client(base_url=self.api_url, headers=headers, timeout=60)

    def head(self, key: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.s3.head_object(Bucket=self.endpoints.bucket, Key=key)
        except self.s3.exceptions.ClientError:
            return None
        return found


@contextmanager
def two_tenant_system(directory: Path, tenants: dict[str, list[str]]) -> Iterator[System]:
    """A system of the module's own plus a second API that holds the admin's token (every
    collection) and each tenant's token, scoped to the collection patterns `tenants` lists."""
    with own_system(directory) as (local, endpoints):
        scopes = {
            token_digest(endpoints.api_token): ["*"],
            **{token_digest(token): patterns for token, patterns in tenants.items()},
        }
        api = local.start_service(
            "api",
            {
                "EMULSION_API_TOKENS": ",".join((endpoints.api_token, *tenants)),
                "EMULSION_API_TOKEN_SCOPES": json.dumps(scopes),
            },
        )
        kube = config.new_client_from_config(config_file=endpoints.kubeconfig)
        yield System(
            local,
            endpoints,
            LocalStack.service_url(api),
            endpoints.api_token,
            s3_client(endpoints),
            client.CustomObjectsApi(kube),
        )


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with two_tenant_system(
        tmp_path_factory.mktemp("security-uploads"),
        {TENANT_A: ["tenant-a-*"], TENANT_B: [B_COLLECTION, "other-*"]},
    ) as system:
        yield system


def photo(seed: int, size: int | None = None) -> bytes:
    """A small JPEG, of exactly `size` bytes when given (a comment segment fills it out):
    a form binds the size, so a replay must send as many bytes."""
    image = Image.new("RGB", (64 + seed % 50, 48), (seed * 37 % 256, 90, 160))

    def saved(comment: bytes) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", comment=comment)
        return buffer.getvalue()

    data = saved(b"")
    if size is not None:
        filler = max(size - len(data) - 4, 1)  # a segment's marker and length: 4 bytes
        while len(data := saved(b"x" * filler)) != size:
            filler += size - len(data)
    return data


def ingest(api: httpx.Client, collection: str, *items: dict[str, str]) -> httpx.Response:
    return api.post("/v1/ingests", json={"collection": collection, "items": list(items)})


def finished(api: httpx.Client, name: str) -> dict[str, Any]:
    """The job's status once it has finished (long polls until a deadline)."""
    deadline = time.monotonic() + JOB_SECONDS
    while time.monotonic() < deadline:
        status = api.get(f"/v1/ingests/{name}", params={"wait": 10})
        assert status.status_code == 200, status.text
        body: dict[str, Any] = status.json()
        if body["finished"]:
            return body
    raise AssertionError(f"job {name} did not finish within {JOB_SECONDS}s")


def missing_answer(response: httpx.Response, key: str) -> dict[str, Any]:
    """The body of an `upload_missing` answer with the key and trace id taken out: what
    every key that may not be ingested must be answered with, word for word."""
    assert response.status_code == 422, response.text
    body: dict[str, Any] = response.json()
    body.pop("trace_id", None)
    anonymous: dict[str, Any] = json.loads(json.dumps(body).replace(key, "<key>"))
    return anonymous


def never_uploaded(collection: str) -> str:
    return keys.staging_key(collection, keys.new_ulid(), "IMG_0001.jpg")


def job_names(system: System, collection: str) -> list[str]:
    with system.api(system.admin) as admin:
        listed = admin.get("/v1/ingests", params={"collection": collection, "limit": 100})
    assert listed.status_code == 200, listed.text
    return [job["name"] for job in listed.json()["items"]]


def kubectl_job(system: System, collection: str, source: str, asset: str) -> str:
    """An IngestJob made past the API (`kubectl create`): only the processor's own checks
    stand between it and the upload."""
    name = keys.new_ulid().lower()
    spec = {"collection": collection, "items": [{"source": source, "asset": asset}]}
    create_job(system.jobs, name, spec, namespace=NAMESPACE)
    return name


def test_a_tenant_cannot_ingest_another_tenants_upload(system: System) -> None:
    """Finding 1: A ingested B's pending upload as its own, and B's ingest then failed."""
    data = photo(1)
    with system.api(TENANT_A) as tenant_a, system.api(TENANT_B) as tenant_b:
        theirs = uploaded(tenant_b, B_COLLECTION, "private-b.jpg", data)["key"]
        before = system.head(theirs)
        assert before is not None
        absent = never_uploaded(B_COLLECTION)

        # Into A's own collection: exactly the answer for a key that was never uploaded.
        stolen = ingest(tenant_a, A_COLLECTION, {"upload_key": theirs, "asset": "stolen.jpg"})
        control = ingest(tenant_a, A_COLLECTION, {"upload_key": absent, "asset": "stolen.jpg"})
        assert stolen.json()["code"] == "upload_missing"
        assert missing_answer(stolen, theirs) == missing_answer(control, absent)
        # Into B's collection: A may not write there at all, whatever the key.
        refused = ingest(tenant_a, B_COLLECTION, {"upload_key": theirs})
        assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
        assert job_names(system, A_COLLECTION) == []

        # Past the API: a job made with kubectl in A's collection naming B's key fails in
        # the processor without reading the upload or handing it to the janitor.
        forged = kubectl_job(system, A_COLLECTION, theirs, "stolen.jpg")
        with system.api(system.admin) as admin:
            status = finished(admin, forged)
            assert (status["failed"], status["failures"][0]["reason"]) == (
                1,
                "UploadNotInCollection",
            )
            assert admin.get(f"/v1/assets/{A_COLLECTION}/stolen.jpg").status_code == 404

        # Nothing read into A's collection, nothing deleted: B's upload is as it was, and
        # B's own ingest of it succeeds.
        after = system.head(theirs)
        assert after is not None and after["ETag"] == before["ETag"]
        accepted = ingest(tenant_b, B_COLLECTION, {"upload_key": theirs})
        assert accepted.status_code == 202, accepted.text
        done = finished(tenant_b, accepted.json()["name"])
        assert (done["phase"], done["succeeded"]) == ("Succeeded", 1)
        asset = tenant_b.get(f"/v1/assets/{B_COLLECTION}/private-b.jpg")
        assert asset.status_code == 200, asset.text
        assert httpx.get(asset.json()["original"]["url"], timeout=30).content == data


def test_an_unauthenticated_client_is_refused_everywhere_alike(system: System) -> None:
    collection = "tenant-a-unauthenticated"
    with system.api(TENANT_A) as tenant_a:
        key = uploaded(tenant_a, collection, "a.jpg", photo(8))["key"]
    form = {"collection": collection, "filename": "a.jpg", "content_type": "image/jpeg", "size": 4}
    requests = [
        ("/v1/uploads", form),
        ("/v1/uploads/present", {"keys": [key]}),
        ("/v1/ingests", {"collection": collection, "items": [{"upload_key": key}]}),
    ]
    for token in (None, "not-a-token", TENANT_A + "x", TENANT_A[:-1]):
        with system.api(token) as stranger:
            for path, body in requests:
                refused = stranger.post(path, json=body)
                assert refused.status_code == 401, (token, path, refused.text)
                assert refused.json()["code"] == "unauthorized"
                assert refused.headers["WWW-Authenticate"] == "Bearer"
    assert job_names(system, collection) == []
    # One upload (the one made above): no form was signed for a stranger.
    listed = system.s3.list_objects_v2(
        Bucket=system.endpoints.bucket, Prefix=keys.staging_prefix(collection)
    )
    assert [entry["Key"] for entry in listed.get("Contents", [])] == [key]


def test_one_upload_twice_in_a_request_is_refused_naming_the_repeats(system: System) -> None:
    """Finding 2: one upload listed 50 times rendered and copied it 50 times."""
    with system.api(TENANT_A) as tenant_a:
        key = uploaded(tenant_a, A_OTHER, "once.jpg", photo(2))["key"]
        items = [{"upload_key": key, "asset": f"copy-{i}.jpg"} for i in range(50)]

        refused = tenant_a.post("/v1/ingests", json={"collection": A_OTHER, "items": items})

        assert refused.status_code == 422, refused.text
        body = refused.json()
        assert body["code"] == "duplicate_upload"
        assert [error["field"] for error in body["errors"]] == [
            f"body.items.{i}.upload_key" for i in range(1, 50)
        ]
        assert all("is also item 0" in error["message"] for error in body["errors"])
        assert job_names(system, A_OTHER) == []
        assert system.head(key) is not None


def test_a_replayed_form_changes_nothing_that_was_ingested(system: System) -> None:
    """Finding 4: a form stays valid until it expires; a replay after the ingest puts other
    bytes under the key. The stored original stays the first bytes, and the key cannot be
    ingested again (nor promoted again by a job made past the API)."""
    # Same size (the form binds it), another image: a valid one, so a job made past the
    # API gets as far as the claim with it.
    first, replayed = photo(3, size=4000), photo(4, size=4000)
    assert replayed != first
    with system.api(TENANT_A) as tenant_a:
        form = uploaded(tenant_a, A_COLLECTION, "checked.jpg", first)
        accepted = ingest(tenant_a, A_COLLECTION, {"upload_key": form["key"]})
        assert accepted.status_code == 202, accepted.text
        done = finished(tenant_a, accepted.json()["name"])
        assert (done["phase"], done["succeeded"]) == ("Succeeded", 1)

        again = post_form(form, replayed)  # the same form, replayed
        assert again.status_code in (200, 201, 204), again.text

        # Already promoted: answered like a missing upload, however the API checks it.
        refused = ingest(tenant_a, A_COLLECTION, {"upload_key": form["key"], "asset": "re.jpg"})
        absent = never_uploaded(A_COLLECTION)
        control = ingest(tenant_a, A_COLLECTION, {"upload_key": absent, "asset": "re.jpg"})
        assert missing_answer(refused, form["key"]) == missing_answer(control, absent)
        with system.api(system.admin) as admin:
            forged = kubectl_job(system, A_COLLECTION, form["key"], "re.jpg")
            status = finished(admin, forged)
            assert status["failures"][0]["reason"] == "UploadAlreadyIngested"

        asset = tenant_a.get(f"/v1/assets/{A_COLLECTION}/checked.jpg")
        assert asset.status_code == 200, asset.text
        assert httpx.get(asset.json()["original"]["url"], timeout=30).content == first
        assert tenant_a.get(f"/v1/assets/{A_COLLECTION}/re.jpg").status_code == 404


def test_present_learns_nothing_across_tenants(system: System) -> None:
    with system.api(TENANT_A) as tenant_a, system.api(TENANT_B) as tenant_b:
        theirs = uploaded(tenant_b, B_OTHER, "b.jpg", photo(5))["key"]
        theirs_absent = never_uploaded(B_OTHER)
        mine = uploaded(tenant_a, A_COLLECTION, "a.jpg", photo(6))["key"]
        mine_absent = never_uploaded(A_COLLECTION)
        legacy = f"staging/{keys.new_ulid()}/b.jpg"
        system.s3.put_object(Bucket=system.endpoints.bucket, Key=legacy, Body=b"x")

        asked = [theirs, theirs_absent, mine, mine_absent, legacy]
        answer = tenant_a.post("/v1/uploads/present", json={"keys": asked})

        assert answer.status_code == 200, answer.text
        assert answer.json() == {"present": [mine]}
        # B's existing upload and B's never-made one read alike; B itself sees its own.
        assert tenant_b.post("/v1/uploads/present", json={"keys": asked}).json() == {
            "present": [theirs]
        }


# -- the property: any token, any verb, any key it did not presign -> refused ----------

TOKENS = {"a": TENANT_A, "b": TENANT_B}
MAY_USE = {"a": ("tenant-a-",), "b": (B_COLLECTION, "other-")}
# The pool's collections and others; no other test ingests into any of them, so any job
# found there was made by an attempt.
POOL = {"a": ("tenant-a-pool-1", "tenant-a-pool-2"), "b": ("other-pool-1", "other-pool-2")}
TARGETS = [*POOL["a"], *POOL["b"], "tenant-a-x", "other-y", "unowned"]


def may_use(tenant: str, collection: str) -> bool:
    return any(collection == s or collection.startswith(s) for s in MAY_USE[tenant])


@pytest.fixture(scope="module")
def pool(system: System) -> dict[str, list[tuple[str, str, str | None]]]:
    """Each tenant's uploads (collection, key, ETag), some in each collection it uses."""
    made: dict[str, list[tuple[str, str, str | None]]] = {}
    for tenant, collections in POOL.items():
        with system.api(TOKENS[tenant]) as api:
            made[tenant] = []
            for number, collection in enumerate(collections * 2):
                key = uploaded(api, collection, f"pool-{number}.jpg", photo(10 + number))["key"]
                head = system.head(key)
                made[tenant].append((collection, key, head["ETag"] if head else None))
    return made


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    presigner=st.sampled_from(["a", "b"]),
    caller=st.sampled_from(["a", "b", "stranger"]),
    which=st.integers(0, 3),
    target=st.sampled_from(TARGETS),
    verb=st.sampled_from(["ingest", "present", "ingest-many"]),
)
def test_no_token_reaches_a_key_it_did_not_presign(
    system: System,
    pool: dict[str, list[tuple[str, str, str | None]]],
    presigner: str,
    caller: str,
    which: int,
    target: str,
    verb: str,
) -> None:
    if caller == presigner:
        return  # its own upload: the other tests cover what it may do with it
    collection, key, etag = pool[presigner][which]
    # The tenants' scopes do not meet: the caller may not use the key's collection.
    assert caller == "stranger" or not may_use(caller, collection)
    token = TOKENS.get(caller, "stranger-token")
    with system.api(token) as api:
        if verb == "present":
            answer = api.post("/v1/uploads/present", json={"keys": [key]})
            if caller == "stranger":
                assert answer.status_code == 401
            else:
                assert answer.json() == {"present": []}
        else:
            # "ingest-many": enough items that the API lists their range, not HEADs each.
            count = 1 if verb == "ingest" else 25
            fillers = [never_uploaded(target) for _ in range(count - 1)]
            items = [{"upload_key": k} for k in (key, *fillers)]
            answer = api.post("/v1/ingests", json={"collection": target, "items": items})
            if caller == "stranger":
                assert answer.status_code == 401
            elif not may_use(caller, target):
                assert (answer.status_code, answer.json()["code"]) == (403, "forbidden")
            else:
                assert (answer.status_code, answer.json()["code"]) == (422, "upload_missing")
                named = {error["message"].split(" ")[0] for error in answer.json()["errors"]}
                assert named == {key, *fillers}
    # Nothing made, nothing promoted, nothing deleted.
    assert job_names(system, target) == []
    head = system.head(key)
    assert head is not None and head["ETag"] == etag
    assert system.head(keys.claim_key(key)) is None


def test_the_pool_was_never_touched_and_owners_still_ingest_it(
    system: System, pool: dict[str, list[tuple[str, str, str | None]]]
) -> None:
    """After the property's attempts: every upload is where it was, with its bytes, and its
    owner ingests it."""
    for tenant, uploads in pool.items():
        with system.api(TOKENS[tenant]) as api:
            for _, key, etag in uploads:
                head = system.head(key)
                assert head is not None and head["ETag"] == etag
            collection = uploads[0][0]
            accepted = ingest(api, collection, {"upload_key": uploads[0][1], "asset": "mine.jpg"})
            assert accepted.status_code == 202, accepted.text
            assert finished(api, accepted.json()["name"])["succeeded"] == 1


def test_the_owner_recorded_with_an_upload_is_the_tokens_identity(system: System) -> None:
    with system.api(TENANT_A) as tenant_a:
        key = uploaded(tenant_a, A_OTHER, "who.jpg", photo(7))["key"]
    metadata = system.s3.head_object(Bucket=system.endpoints.bucket, Key=key)["Metadata"]
    assert metadata["emulsion-owner"] == hashlib.sha256(TENANT_A.encode()).hexdigest()[:16]
    assert metadata["emulsion-collection"] == A_OTHER
