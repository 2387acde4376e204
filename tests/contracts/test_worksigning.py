"""Work-message signatures: only the exact subject and body under the same key verify, and
the key settings refuse to start without a usable key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulsion_contracts import worksigning
from emulsion_contracts.settings import SettingsError, WorkSigningSettings, load_settings

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


def test_the_key_comes_from_the_file_before_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("f" * 40 + "\n")
    monkeypatch.setenv("EMULSION_WORK_SIGNING_KEY_FILE", str(key_file))
    monkeypatch.setenv("EMULSION_WORK_SIGNING_KEY", "v" * 40)
    assert load_settings(WorkSigningSettings).signing_key() == b"f" * 40


@pytest.mark.parametrize(
    ("variables", "problem"),
    [
        ({}, "no work-signing key"),
        ({"EMULSION_WORK_SIGNING_KEY": "short"}, "at least 32"),
        ({"EMULSION_WORK_SIGNING_KEY_FILE": "/nonexistent/key"}, "cannot read"),
    ],
)
def test_without_a_usable_key_the_start_stops_naming_the_variables(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], problem: str
) -> None:
    for name in ("EMULSION_WORK_SIGNING_KEY", "EMULSION_WORK_SIGNING_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as failure:
        load_settings(WorkSigningSettings)
    message = str(failure.value.code)
    assert "EMULSION_WORK_SIGNING_KEY" in message and problem in message
