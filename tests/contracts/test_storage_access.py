"""The least S3 policy of each component, as data: what it grants and denies,
and the IAM document rendered from it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulsion_contracts import keys
from emulsion_contracts.storage_access import ACCESS, AREAS, policy

names = st.text("abcXYZ09-._/", min_size=1, max_size=20)


@given(st.sampled_from(AREAS), names)
def test_only_the_janitor_deletes_and_it_never_writes(area: str, rest: str) -> None:
    key = area + rest
    assert ACCESS["janitor"].allows("delete", key)
    assert not ACCESS["api"].allows("delete", key)
    assert not ACCESS["processor"].allows("delete", key)
    assert not ACCESS["janitor"].allows("write", key)


@given(names)
def test_who_writes_which_area(rest: str) -> None:
    for area in (keys.ORIGINALS, keys.DERIVATIVES):
        assert not ACCESS["api"].allows("write", area + rest)
        assert ACCESS["processor"].allows("write", area + rest)
    assert ACCESS["api"].allows("write", keys.MANIFESTS + rest)  # tombstones
    assert ACCESS["processor"].allows("write", keys.MANIFESTS + rest)
    # Under staging/ the processor writes its claim markers and nothing else.
    claim = f"{keys.STAGING}acme/{keys.new_ulid()}/.claim"
    assert ACCESS["processor"].allows("write", claim)
    assert not ACCESS["processor"].allows("write", f"{keys.STAGING}acme/{rest}.jpg")


@pytest.mark.parametrize("component", sorted(ACCESS))
def test_the_policy_document_grants_what_the_table_says(component: str) -> None:
    document = policy(component, "photos")
    granted = {
        action: resources
        for statement in document["Statement"]
        for action in statement["Action"]
        for resources in [statement["Resource"]]
    }
    access = ACCESS[component]
    for kind, action in (("read", "s3:GetObject"), ("write", "s3:PutObject")):
        patterns = getattr(access, kind)
        assert granted.get(action, []) == [f"arn:aws:s3:::photos/{p}" for p in patterns]
    assert ("s3:DeleteObject" in granted) == (component == "janitor")
    (listing,) = [s for s in document["Statement"] if s["Action"] == ["s3:ListBucket"]]
    assert listing["Resource"] == ["arn:aws:s3:::photos"]
    assert listing["Condition"]["StringLike"]["s3:prefix"] == [f"{p}*" for p in access.list]
    assert all(statement["Effect"] == "Allow" for statement in document["Statement"])
    assert "controller" not in ACCESS  # it never touches S3


@given(names)
def test_the_capture_order_index_is_written_by_the_processor_listed_by_the_api(rest: str) -> None:
    key = keys.TAKEN + rest
    assert ACCESS["processor"].allows("write", key)
    assert not ACCESS["processor"].allows("read", key)
    assert not ACCESS["processor"].allows("list", keys.TAKEN)
    # The API pages by the keys alone: it lists the index, never reads or writes it.
    assert ACCESS["api"].allows("list", keys.TAKEN + "holiday/")
    assert not ACCESS["api"].allows("read", key)
    assert not ACCESS["api"].allows("write", key)
    assert ACCESS["janitor"].allows("list", keys.TAKEN)
    assert ACCESS["janitor"].allows("delete", key)
