"""The processor stops at start-up naming each of its required variables that is missing."""

from __future__ import annotations

import pytest

from emulsion_processor.settings import load
from tests.settings_checks import assert_missing_is_named

REQUIRED = ("NATS_URL", "EMULSION_BUCKET", "EMULSION_SCRATCH_DIR", "EMULSION_WORK_SIGNING_KEY")


@pytest.mark.parametrize("missing", REQUIRED)
def test_each_missing_required_variable_is_named(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    environment = {
        "NATS_URL": "nats://127.0.0.1:4222",
        "EMULSION_BUCKET": "photos",
        "EMULSION_SCRATCH_DIR": "/tmp/scratch",
        "EMULSION_WORK_SIGNING_KEY": "k" * 32,
    }
    assert_missing_is_named(monkeypatch, load, REQUIRED, missing, environment)
