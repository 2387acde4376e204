"""The janitor stops at start-up naming each of its required variables that is missing."""

from __future__ import annotations

import pytest

from emulsion_janitor.settings import load
from emulsion_runtime.settings import SettingsError

REQUIRED = ("NATS_URL", "EMULSION_BUCKET")


@pytest.mark.parametrize("missing", REQUIRED)
def test_each_missing_required_variable_is_named(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:4222")
    monkeypatch.setenv("EMULSION_BUCKET", "photos")
    monkeypatch.delenv(missing)
    with pytest.raises(SettingsError) as failure:
        load()
    message = str(failure.value.code)
    assert message.startswith("invalid configuration:")
    assert [name for name in REQUIRED if name in message] == [missing]
