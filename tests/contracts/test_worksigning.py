"""Work-message signatures: only the exact subject and body under the same key verify (the
key's settings: tests/runtime/test_settings.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulsion_contracts import worksigning

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
SUBJECT = "emulsion.work.photos.job-1"
BODY = b'{"v":1,"version":"01JABCDEF"}'

subjects = st.from_regex(r"emulsion\.work\.[a-z0-9_-]{1,12}\.[a-z0-9_-]{1,12}", fullmatch=True)


def test_the_signature_travels_as_v1_base64_and_verifies() -> None:
    header = worksigning.sign(KEY, SUBJECT, BODY)
    assert header.startswith("v1=")
    assert worksigning.verify(KEY, SUBJECT, BODY, header)
    assert worksigning.refusal(KEY, SUBJECT, BODY, header) is None


@pytest.mark.parametrize("header", [None, "", "v1=", "v2=AAAA", "v1=not base64!", "garbage"])
def test_a_missing_or_malformed_signature_never_verifies(header: str | None) -> None:
    assert not worksigning.verify(KEY, SUBJECT, BODY, header)
    assert worksigning.refusal(KEY, SUBJECT, BODY, header) == (
        "missing" if not header else "invalid"
    )


@given(subject=subjects, body=st.binary(max_size=200), other=st.binary(max_size=200))
def test_a_signature_covers_exactly_its_body(subject: str, body: bytes, other: bytes) -> None:
    header = worksigning.sign(KEY, subject, body)
    assert worksigning.verify(KEY, subject, other, header) == (other == body)


@given(subject=subjects, other=subjects, body=st.binary(max_size=100))
def test_a_signature_covers_exactly_its_subject(subject: str, other: str, body: bytes) -> None:
    header = worksigning.sign(KEY, subject, body)
    assert worksigning.verify(KEY, other, body, header) == (other == subject)


def test_another_key_s_signature_does_not_verify() -> None:
    assert not worksigning.verify(KEY, SUBJECT, BODY, worksigning.sign(OTHER_KEY, SUBJECT, BODY))


def test_other_headers_are_kept_and_the_signature_added() -> None:
    headers = worksigning.signed_headers(KEY, SUBJECT, BODY, {"Nats-Msg-Id": "uid/0"})
    assert headers["Nats-Msg-Id"] == "uid/0"
    assert worksigning.verify(KEY, SUBJECT, BODY, headers[worksigning.HEADER])
