"""Tokens: the API notices a changed token file and scopes file without a
restart. A revoked token is refused within the reload interval (a minute at most with
the kubelet's own delay); a malformed change is refused loudly and the last good
configuration stays in force; a change of scopes applies to the running API.

The API runs as a real process on the real stack, reading its tokens and scopes from
files as the chart mounts them (a Secret and a ConfigMap in one directory), rewritten
here as the kubelet rewrites them: a new file renamed over the old one.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from emulsion_api.scopes import token_digest
from emulsion_devstack.processes import ProcessRecord, stop, wait_for
from emulsion_devstack.stack import Endpoints, LocalStack

KEEP = secrets.token_urlsafe(24)
REVOKE = secrets.token_urlsafe(24)
# The chart's reload interval is the default (5 s); a revoked token must stop within a minute.
REVOCATION_DEADLINE = 60.0


@dataclass(frozen=True)
class ReloadingApi:
    url: str
    record: ProcessRecord
    tokens_file: Path
    scopes_file: Path

    def status(self, token: str, path: str) -> int:
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.get(self.url + path, headers=headers, timeout=30.0).status_code

    def log(self) -> str:
        return Path(self.record.log).read_text(errors="replace")


def swap(path: Path, text: str) -> None:
    """Replace `path` whole, as the kubelet updates a mounted Secret or ConfigMap."""
    fresh = path.with_name(f".{path.name}.new")
    fresh.write_text(text)
    fresh.replace(path)


@pytest.fixture(scope="module")
def api(
    stack: Endpoints, stack_state_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ReloadingApi]:
    directory = tmp_path_factory.mktemp("api-tokens")
    tokens_file, scopes_file = directory / "tokens", directory / "scopes.json"
    tokens_file.write_text(f"{KEEP}\n{REVOKE}\n")
    scopes_file.write_text(
        json.dumps({token_digest(KEEP): ["keep-*"], token_digest(REVOKE): ["revoke-*"]})
    )
    record = LocalStack(stack_state_dir, say=lambda line: None).start_service(
        "api",
        {
            # Only the files' tokens: the stack's own token is not in the scopes.
            "EMULSION_API_TOKENS": "",
            "EMULSION_API_TOKENS_FILE": str(tokens_file),
            "EMULSION_API_TOKEN_SCOPES_FILE": str(scopes_file),
        },
    )
    try:
        yield ReloadingApi(LocalStack.service_url(record), record, tokens_file, scopes_file)
    finally:
        stop(record)


def test_a_token_removed_from_the_file_is_refused_without_a_restart(api: ReloadingApi) -> None:
    assert api.status(REVOKE, "/v1/assets/revoke-photos") == 200
    assert api.status(KEEP, "/v1/assets/keep-photos") == 200

    swap(api.tokens_file, f"{KEEP}\n")

    wait_for(
        "the revoked token to be refused",
        lambda: api.status(REVOKE, "/v1/assets/revoke-photos") == 401,
        timeout=REVOCATION_DEADLINE,
    )
    # Refused everywhere, exactly as a token that never existed; the other still works.
    for path in ("/v1/assets/revoke-photos", "/v1/assets/keep-photos", "/v1/ingests"):
        assert api.status(REVOKE, path) == 401, path
        assert api.status(secrets.token_urlsafe(24), path) == 401, path
    assert api.status(KEEP, "/v1/assets/keep-photos") == 200
    assert api.record.alive()  # no restart
    assert "token configuration reloaded" in api.log()


def test_a_malformed_change_is_refused_loudly_and_a_valid_one_applied(api: ReloadingApi) -> None:
    swap(api.tokens_file, f"{KEEP}\n")
    swap(api.scopes_file, json.dumps({token_digest(KEEP): ["keep-*"]}))
    wait_for(
        "the scopes of the first test to be in force",
        lambda: api.status(KEEP, "/v1/assets/keep-photos") == 200,
        timeout=REVOCATION_DEADLINE,
    )
    refusals = api.log().count("the changed token configuration is refused")

    # The old prefix form, which does not say where the prefix ends: refused, and the
    # previous scopes stay (the token is neither locked out nor widened).
    swap(api.scopes_file, json.dumps({token_digest(KEEP): ["keep*"]}))
    wait_for(
        "the malformed scopes to be refused in the log",
        lambda: api.log().count("the changed token configuration is refused") > refusals,
        timeout=REVOCATION_DEADLINE,
    )
    assert "must end with a separator" in api.log()
    assert api.status(KEEP, "/v1/assets/keep-photos") == 200
    assert api.status(KEEP, "/v1/assets/keepcorp") == 404

    # A valid narrower scope: applied, the rest of the old prefix is out of scope now.
    swap(
        api.scopes_file,
        json.dumps({token_digest(KEEP): ["keep-photos"]}),
    )
    wait_for(
        "the narrower scopes to apply",
        lambda: api.status(KEEP, "/v1/assets/keep-other") == 404,
        timeout=REVOCATION_DEADLINE,
    )
    assert api.status(KEEP, "/v1/assets/keep-photos") == 200
    assert api.record.alive()
