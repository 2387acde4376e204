"""Tenant scoping: a token sees and changes only its collections; a prefix scope says
where its prefix ends.

Token A may use `tenant-a-*`, token B `tenant-b` and `other-*`, the stack's token is an
admin (`*`). Out of scope, a read is 404 (as for nothing at all: existence does not leak)
and a write is 403.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulsion_api import jobs
from emulsion_api.scopes import EVERYTHING, SEPARATORS, Scopes
from emulsion_contracts import crd, keys
from emulsion_devstack.stack import Endpoints

from .conftest import (
    NAMESPACE,
    TENANT_A_PREFIX,
    TENANT_A_TOKEN,
    TENANT_B_TOKEN,
    ApiProcess,
    commit_manifest,
    patch_status,
)

Stage = Callable[..., list[str]]

# Every valid collection: the pattern, less the ".." that check_collection also refuses.
collections = st.from_regex(f"^{keys.COLLECTION_PATTERN}$", fullmatch=True).filter(
    lambda name: ".." not in name
)


# A prefix as written before its `*`: the start of a name, ending with a separator.
prefixes = st.builds(
    lambda stem, separator: f"{stem[:61]}{separator}",
    collections,
    st.sampled_from(SEPARATORS),
).filter(lambda prefix: ".." not in prefix)


@given(prefixes, collections)
def test_a_prefix_scope_allows_exactly_the_names_it_begins(prefix: str, collection: str) -> None:
    scopes = Scopes.parse([f"{prefix}*"])
    assert scopes.allows(collection) == collection.startswith(prefix)
    assert EVERYTHING.allows(collection)


@given(prefixes, collections, st.text("abcXYZ019", min_size=1, max_size=3))
def test_a_prefix_scope_never_covers_a_name_without_its_full_prefix(
    prefix: str, collection: str, continuation: str
) -> None:
    """`acme*` once covered `acmecorp`. A prefix scope covers a name only when the
    name starts with the whole prefix, its separator included: never the stem's other
    continuations, nor the stem alone."""
    scopes = Scopes.parse([f"{prefix}*"])
    stem = prefix[:-1]
    if not collection.startswith(prefix):
        assert not scopes.allows(collection)
    assert not scopes.allows(stem + continuation)  # `acme-*` never covers `acmecorp`
    assert not scopes.allows(stem)  # nor `acme` itself


@given(collections.filter(lambda name: name[-1] not in SEPARATORS and len(name) < 63))
def test_a_prefix_that_does_not_say_where_it_ends_is_refused(stem: str) -> None:
    """The old form `acme*` is refused, not reinterpreted: the error names both readings."""
    with pytest.raises(ValueError, match="must end with a separator") as refused:
        Scopes.parse([f"{stem}*"])
    assert repr(f"{stem}-*") in str(refused.value) and repr(stem) in str(refused.value)


@given(collections, collections)
def test_a_name_scope_allows_that_collection_only(name: str, collection: str) -> None:
    assert Scopes.parse([name]).allows(collection) == (collection == name)


@pytest.mark.parametrize(
    "bad",
    ["", "**", "a/b", "-x", "a*b", "*x", "c" * 64, "..*", "acme*", "a..-*", "-*", "c" * 63 + "-*"],
)
def test_malformed_scopes_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="scope"):
        Scopes.parse([bad])


def _tenant_a_collection() -> str:
    return f"{TENANT_A_PREFIX}{keys.new_ulid().lower()[-10:]}"


def _batch_job(custom: Any, collection: str, source: str) -> str:
    """An IngestJob that is one part of a split request (a batch), made directly."""
    version = keys.new_ulid()
    batch = jobs.job_name(version)
    custom.create_namespaced_custom_object(
        crd.GROUP,
        crd.VERSION,
        NAMESPACE,
        crd.PLURAL,
        {
            "apiVersion": crd.API_VERSION,
            "kind": crd.KIND,
            "metadata": {"name": batch, "labels": {crd.LABEL_BATCH: batch}},
            "spec": {
                "collection": collection,
                "version": version,
                "items": [{"source": source, "asset": "日本.jpg"}],
            },
        },
    )
    return batch


def test_a_token_cannot_reach_another_tenants_collection(
    api_process: ApiProcess, custom: Any, s3: Any, stack: Endpoints, stage: Stage
) -> None:
    collection = _tenant_a_collection()
    version = keys.version_id(keys.new_ulid(), 0)
    commit_manifest(s3, stack.bucket, collection, "日本.jpg", version)
    asset = f"/v1/assets/{collection}/%E6%97%A5%E6%9C%AC.jpg"
    never = f"/v1/assets/{collection}/never-was.jpg"
    staged = stage(2, collection)
    ingest = {"collection": collection, "items": [{"upload_key": staged[0]}]}
    with (
        api_process.client(TENANT_A_TOKEN) as tenant_a,
        api_process.client(TENANT_B_TOKEN) as tenant_b,
        api_process.client() as admin,
    ):
        accepted = tenant_a.post("/v1/ingests", json=ingest)
        assert accepted.status_code == 202, accepted.text
        job = accepted.json()["name"]
        patch_status(custom, job, {"phase": "Succeeded", "succeeded": 1, "succeededIndexes": "0"})
        batch = _batch_job(custom, collection, staged[1])

        # B: every read is the 404 of a thing that does not exist, every write a 403.
        for path in (
            asset,
            f"/v1/ingests/{job}",
            f"/v1/ingests/{job}/events",
            f"/v1/batches/{batch}",
        ):
            refused = tenant_b.get(path)
            assert refused.status_code == 404, (path, refused.text)
            assert refused.json()["code"] == "not_found"
        missing = tenant_b.get(never)
        assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
        deleted = tenant_b.delete(asset)
        assert (deleted.status_code, deleted.json()["code"]) == (403, "forbidden")
        written = tenant_b.post("/v1/ingests", json=ingest)
        assert (written.status_code, written.json()["code"]) == (403, "forbidden")
        assert tenant_b.delete(never).status_code == 403  # whether it exists or not

        # A, and the admin, reach all of it.
        for session in (tenant_a, admin):
            for path in (asset, f"/v1/ingests/{job}", f"/v1/batches/{batch}"):
                assert session.get(path).status_code == 200, (path, session.get(path).text)
            events = session.get(f"/v1/ingests/{job}/events")
            assert events.status_code == 200 and "event: end" in events.text
        # An upload is for one collection: the admin's ingest into tenant-b names one of it.
        other = {"collection": "tenant-b", "items": [{"upload_key": stage(1, "tenant-b")[0]}]}
        assert admin.post("/v1/ingests", json=other).status_code == 202
        assert tenant_a.post("/v1/ingests", json=other).status_code == 403
        assert tenant_a.delete(asset).status_code == 202
        assert admin.get(asset).status_code == 404
