"""Token reload: the API re-reads its token and scope files while it runs,
applies a valid change, and keeps the last good configuration when a change is malformed."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from emulsion_api.limits import TokenLimits
from emulsion_api.scopes import Scopes, token_digest
from emulsion_api.settings import load_api_settings
from emulsion_api.tokens import CONFIGURATION_OK, Tokens


@pytest.fixture
def files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Path, Path]:
    for name in ("EMULSION_API_TOKENS", "EMULSION_API_TOKEN_SCOPES", "EMULSION_API_TOKEN_LIMITS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:1")
    monkeypatch.setenv("EMULSION_BUCKET", "b")
    tokens, scopes = tmp_path / "tokens", tmp_path / "scopes.json"
    tokens.write_text("alpha\nbeta\n")
    scopes.write_text(json.dumps({token_digest("alpha"): ["a-*"], token_digest("beta"): ["b"]}))
    monkeypatch.setenv("EMULSION_API_TOKENS_FILE", str(tokens))
    monkeypatch.setenv("EMULSION_API_TOKEN_SCOPES_FILE", str(scopes))
    return tokens, scopes


def accepted(tokens: Tokens) -> dict[str, Scopes]:
    return {token.decode(): scopes for token, scopes in tokens.current}


def swap(path: Path, text: str) -> None:
    """Replace `path` as the kubelet updates a mounted Secret: a new file renamed over it."""
    fresh = path.with_name(f".{path.name}.new")
    fresh.write_text(text)
    fresh.replace(path)


def test_a_removed_token_is_revoked_and_a_scope_change_applied(files: tuple[Path, Path]) -> None:
    tokens_file, scopes_file = files
    tokens = Tokens(load_api_settings())
    assert set(accepted(tokens)) == {"alpha", "beta"}
    assert not tokens.check()  # nothing changed, nothing applied

    swap(tokens_file, "alpha\n")
    assert tokens.check()
    assert set(accepted(tokens)) == {"alpha"}

    scopes_file.write_text(json.dumps({token_digest("alpha"): ["a-x"]}))  # in place
    assert tokens.check()
    assert accepted(tokens)["alpha"] == Scopes.parse(["a-x"])
    assert CONFIGURATION_OK._value.get() == 1


@pytest.mark.parametrize(
    ("which", "text", "reason"),
    [
        ("scopes", "{not json", "not JSON"),
        ("scopes", '{"ALPHA": ["a*"]}', "must end with a separator"),
        ("scopes", '{"ALPHA": ["a-*"]}', "no scopes for the token"),  # beta left out
        ("tokens", "\n", "no bearer token"),
        ("tokens", None, "No such file"),
    ],
)
def test_a_malformed_change_keeps_the_last_good_configuration(
    files: tuple[Path, Path],
    caplog: pytest.LogCaptureFixture,
    which: str,
    text: str | None,
    reason: str,
) -> None:
    tokens_file, scopes_file = files
    tokens = Tokens(load_api_settings())
    before = tokens.current
    path = tokens_file if which == "tokens" else scopes_file
    if text is None:
        path.unlink()
    else:
        path.write_text(text.replace("ALPHA", token_digest("alpha")))

    with caplog.at_level(logging.ERROR, logger="emulsion_api.tokens"):
        assert not tokens.check()
    assert tokens.current == before  # neither locked out nor widened
    assert CONFIGURATION_OK._value.get() == 0
    [record] = caplog.records
    assert record.levelno == logging.ERROR and "refused" in record.getMessage()
    assert reason in record.getMessage()

    # Fixed: applied at the next check.
    tokens_file.write_text("alpha\n")
    scopes_file.write_text(json.dumps({token_digest("alpha"): ["a-*"]}))
    assert tokens.check()
    assert set(accepted(tokens)) == {"alpha"}
    assert CONFIGURATION_OK._value.get() == 1


def test_limits_are_reread_with_the_tokens_and_a_malformed_change_keeps_the_last_good(
    files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    limits_file = files[1].with_name("limits.json")
    limits_file.write_text(json.dumps({"default": {"watches": 3}}))
    monkeypatch.setenv("EMULSION_API_TOKEN_LIMITS_FILE", str(limits_file))
    tokens = Tokens(load_api_settings())
    assert tokens.limits.of(token_digest("alpha")).watches == 3

    swap(limits_file, json.dumps({"tokens": {token_digest("alpha"): {"itemsInFlight": 7}}}))
    assert tokens.check()
    assert tokens.limits.of(token_digest("alpha")).items_in_flight == 7
    assert tokens.limits.of(token_digest("beta")) == TokenLimits()

    swap(limits_file, json.dumps({"default": {"watches": 0}}))
    assert not tokens.check()
    assert tokens.limits.of(token_digest("alpha")).items_in_flight == 7
    assert CONFIGURATION_OK._value.get() == 0
