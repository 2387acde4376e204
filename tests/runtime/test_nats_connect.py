"""What the NATS settings give a connection: the server list, credentials, inbox and TLS."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from emulsion_devstack import pki
from emulsion_runtime import messaging
from emulsion_runtime.settings import NatsSettings, SettingsError, load_settings


def test_connect_options_use_the_identitys_credentials_inbox_and_ca(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    ca = tmp_path / "ca.crt"
    ca.write_text("")
    monkeypatch.setenv("NATS_URL", "tls://nats:4222")
    monkeypatch.setenv("NATS_USER", "processor")
    monkeypatch.setenv("NATS_PASSWORD_FILE", str(password))
    monkeypatch.setenv("NATS_CA_FILE", str(ca))
    settings = load_settings(NatsSettings)
    captured: list[str] = []

    def tls_context(path: Path) -> str:
        captured.append(str(path))
        return "ctx"

    monkeypatch.setattr(messaging, "tls_context", tls_context)
    options = messaging.connect_options(settings)
    assert options == {
        "servers": ["tls://nats:4222"],
        "user": "processor",
        "password": "s3cret",
        "inbox_prefix": "_INBOX_processor",
        "tls": "ctx",
    }
    assert captured == [str(ca)]


def test_without_credentials_nothing_is_sent_but_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATS_URL", "nats://nats:4222")
    for name in ("NATS_USER", "NATS_PASSWORD", "NATS_PASSWORD_FILE", "NATS_CA_FILE"):
        monkeypatch.delenv(name, raising=False)
    assert messaging.connect_options(load_settings(NatsSettings)) == {
        "servers": ["nats://nats:4222"]
    }


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"NATS_USER": "api"}, "NATS_USER is set without NATS_PASSWORD"),
        ({"NATS_PASSWORD": "x"}, "a NATS password is set without NATS_USER"),
    ],
)
def test_half_a_credential_stops_the_start(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], named: str
) -> None:
    monkeypatch.setenv("NATS_URL", "nats://nats:4222")
    for name in ("NATS_USER", "NATS_PASSWORD", "NATS_PASSWORD_FILE", "NATS_CA_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=named):
        load_settings(NatsSettings)


def test_the_password_variable_serves_when_there_is_no_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NATS_URL", "nats://nats:4222")
    monkeypatch.setenv("NATS_USER", "api")
    monkeypatch.setenv("NATS_PASSWORD", "from-env")
    monkeypatch.delenv("NATS_PASSWORD_FILE", raising=False)
    assert load_settings(NatsSettings).password() == "from-env"


def test_the_tls_context_verifies_the_server_against_the_ca_only(tmp_path: Path) -> None:
    context = messaging.tls_context(pki.make_ca(tmp_path, "a test CA"))
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "a test CA"),),)]
