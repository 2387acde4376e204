"""Settings: bearer tokens from the variable and a mounted file; none at all is an error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emulsion_api.scopes import EVERYTHING, Scopes, token_digest
from emulsion_api.settings import load_api_settings
from emulsion_runtime.settings import SettingsError


@pytest.fixture(autouse=True)
def base_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "EMULSION_API_TOKENS",
        "EMULSION_API_TOKENS_FILE",
        "EMULSION_API_TOKEN_SCOPES",
        "EMULSION_API_TOKEN_SCOPES_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:1")
    monkeypatch.setenv("EMULSION_BUCKET", "b")


def test_tokens_come_from_the_variable_and_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text("from-file-1\n\n  from-file-2  \n")
    monkeypatch.setenv("EMULSION_API_TOKENS", "one, two,")
    monkeypatch.setenv("EMULSION_API_TOKENS_FILE", str(tokens_file))

    settings = load_api_settings()

    assert settings.tokens() == ("one", "two", "from-file-1", "from-file-2")
    assert settings.namespace == "default"


def test_no_token_is_a_configuration_error() -> None:
    with pytest.raises(SettingsError, match="no bearer token configured"):
        load_api_settings()


def test_an_unreadable_token_file_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EMULSION_API_TOKENS_FILE", str(tmp_path / "absent"))
    with pytest.raises(SettingsError, match="EMULSION_API_TOKENS_FILE"):
        load_api_settings()


def test_a_malformed_limit_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMULSION_API_TOKENS", "t")
    monkeypatch.setenv("EMULSION_UPLOAD_MAX_BYTES", "lots")
    with pytest.raises(SettingsError, match="EMULSION_UPLOAD_MAX_BYTES"):
        load_api_settings()


def test_without_scopes_every_token_is_an_admin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMULSION_API_TOKENS", "one,two")
    assert load_api_settings().scoped_tokens() == (("one", EVERYTHING), ("two", EVERYTHING))


def test_scopes_are_given_by_the_tokens_sha256(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMULSION_API_TOKENS", "admin,acme")
    monkeypatch.setenv(
        "EMULSION_API_TOKEN_SCOPES",
        json.dumps({token_digest("admin"): ["*"], token_digest("acme"): ["acme-*", "shared"]}),
    )

    scoped = dict(load_api_settings().scoped_tokens())

    assert scoped["admin"].admin
    assert scoped["acme"] == Scopes(frozenset({"shared"}), ("acme-",), admin=False)


@pytest.mark.parametrize(
    ("scopes", "message"),
    [
        ("{not json", "not JSON"),
        ('["*"]', "JSON object"),
        ('{"DIGEST": "*"}', "JSON object"),
        ('{"abc": ["*"]}', "SHA-256"),
        ('{"DIGEST": ["a/b"]}', "scope"),
        # The old prefix form, whose end was not said: refused, naming both readings.
        ('{"DIGEST": ["acme*"]}', r"must end with a separator.*'acme-\*'.*'acme'"),
        ("{}", "no scopes for the token"),
    ],
)
def test_malformed_or_missing_scopes_stop_the_start(
    monkeypatch: pytest.MonkeyPatch, scopes: str, message: str
) -> None:
    """A token left out once scopes are configured is an error, never silently an admin."""
    monkeypatch.setenv("EMULSION_API_TOKENS", "tok")
    monkeypatch.setenv("EMULSION_API_TOKEN_SCOPES", scopes.replace("DIGEST", token_digest("tok")))
    with pytest.raises(SettingsError, match=message):
        load_api_settings()


@pytest.mark.parametrize("missing", ["NATS_URL", "EMULSION_BUCKET"])
def test_each_missing_required_variable_is_named(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    monkeypatch.setenv("EMULSION_API_TOKENS", "t")
    monkeypatch.delenv(missing)
    with pytest.raises(SettingsError) as failure:
        load_api_settings()
    message = str(failure.value.code)
    assert message.startswith("invalid configuration:")
    assert [name for name in ("NATS_URL", "EMULSION_BUCKET") if name in message] == [missing]


def test_scopes_come_from_a_file_too(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    scopes_file = tmp_path / "scopes.json"
    scopes_file.write_text(json.dumps({token_digest("acme"): ["acme-*"]}))
    monkeypatch.setenv("EMULSION_API_TOKENS", "acme")
    monkeypatch.setenv("EMULSION_API_TOKEN_SCOPES_FILE", str(scopes_file))
    assert load_api_settings().scoped_tokens() == (("acme", Scopes.parse(["acme-*"])),)

    scopes_file.write_text("{}")
    with pytest.raises(SettingsError, match=r"EMULSION_API_TOKEN_SCOPES_FILE: .*no scopes"):
        load_api_settings()
    monkeypatch.setenv("EMULSION_API_TOKEN_SCOPES", "{}")
    with pytest.raises(SettingsError, match="not both"):
        load_api_settings()


def test_finished_jobs_expire_after_an_hour_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EMULSION_API_TOKENS", "one")
    monkeypatch.delenv("EMULSION_JOB_TTL_SECONDS", raising=False)
    assert load_api_settings().ttl_seconds_after_finished == 3600
    monkeypatch.setenv("EMULSION_JOB_TTL_SECONDS", "86400")
    assert load_api_settings().ttl_seconds_after_finished == 86400


@pytest.mark.parametrize(
    "limits", ['{"default": {"watches": 0}}', "{not json", '{"tokens": {"abc": {}}}']
)
def test_malformed_token_limits_stop_the_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, limits: str
) -> None:
    monkeypatch.setenv("EMULSION_API_TOKENS", "t")
    monkeypatch.setenv("EMULSION_API_TOKEN_LIMITS", limits)
    with pytest.raises(SettingsError, match="EMULSION_API_TOKEN_LIMITS"):
        load_api_settings()
