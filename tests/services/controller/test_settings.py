"""The controller reads no object-store setting: it starts without any, and names what it lacks."""

from __future__ import annotations

import pytest

from emulsion_controller.settings import load
from emulsion_runtime.settings import SettingsError

UNSET = (
    "NATS_URL",
    "EMULSION_BUCKET",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "KUBECONFIG",
    "EMULSION_WORK_SIGNING_KEY",
    "EMULSION_WORK_SIGNING_KEY_FILE",
)


@pytest.fixture(autouse=True)
def bare_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in UNSET:
        monkeypatch.delenv(name, raising=False)


def test_settings_parse_without_any_s3_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:4222")
    monkeypatch.setenv("EMULSION_WORK_SIGNING_KEY", "k" * 32)
    settings = load()
    assert settings.nats_url == "nats://127.0.0.1:4222"
    assert not hasattr(settings, "bucket")


def test_a_missing_nats_url_stops_the_start_naming_only_it() -> None:
    with pytest.raises(SettingsError) as failure:
        load()
    message = str(failure.value.code)
    assert "NATS_URL" in message
    assert "EMULSION_BUCKET" not in message


def test_without_a_work_signing_key_the_controller_does_not_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:4222")
    with pytest.raises(SettingsError) as failure:
        load()
    assert "EMULSION_WORK_SIGNING_KEY" in str(failure.value.code)
