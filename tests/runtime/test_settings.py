"""Settings from the environment: every missing variable named, each part its own, and the
work-signing key refused unless usable."""

from pathlib import Path

import pytest

from emulsion_runtime.settings import (
    NatsSettings,
    S3Settings,
    ServiceSettings,
    SettingsError,
    WorkSigningSettings,
    load_settings,
)


class Composed(ServiceSettings, NatsSettings, S3Settings):
    """Parts composed as a service composes them."""


def test_missing_settings_name_every_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NATS_URL", raising=False)
    monkeypatch.delenv("EMULSION_BUCKET", raising=False)
    with pytest.raises(SettingsError) as failure:
        load_settings(Composed)
    assert "NATS_URL" in str(failure.value.code)
    assert "EMULSION_BUCKET" in str(failure.value.code)


def test_a_part_requires_only_its_own_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NATS_URL", raising=False)
    monkeypatch.delenv("EMULSION_BUCKET", raising=False)
    assert load_settings(ServiceSettings).http_port == 8080
    with pytest.raises(SettingsError) as failure:
        load_settings(NatsSettings)
    assert "NATS_URL" in str(failure.value.code)
    assert "EMULSION_BUCKET" not in str(failure.value.code)


def test_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:4222")
    monkeypatch.setenv("EMULSION_BUCKET", "photos")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("EMULSION_GC_GRACE_SECONDS", "5")
    settings = load_settings(Composed)
    assert (settings.nats_url, settings.bucket, settings.s3_endpoint_url) == (
        "nats://127.0.0.1:4222",
        "photos",
        "http://127.0.0.1:9000",
    )
    assert settings.gc_grace_seconds == 5


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
