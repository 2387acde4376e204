"""The NATS permission table: least privilege by construction, and what the settings give."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from emulsion_contracts import messaging, natsauth, wire
from emulsion_contracts.settings import NatsSettings, SettingsError, load_settings
from emulsion_devstack import pki
from tests import tools

ADMIN_VERBS = ("STREAM.CREATE", "STREAM.UPDATE", "STREAM.DELETE", "CONSUMER.DURABLE.CREATE")


def test_the_identities_are_the_four_services() -> None:
    assert set(natsauth.IDENTITIES) == {"api", "controller", "processor", "janitor"}
    assert natsauth.BOOTSTRAP == "controller"


def test_each_identity_subscribes_only_below_its_own_inbox() -> None:
    for identity in natsauth.IDENTITIES.values():
        assert identity.subscribe == (f"_INBOX_{identity.name}.>",)
        assert not identity.allow_responses
        assert not any(s.startswith("_INBOX") for s in identity.publish)


def test_only_the_controller_creates_or_updates_streams_and_durables() -> None:
    for identity in natsauth.IDENTITIES.values():
        admin = [s for s in identity.publish if any(f".{verb}." in s for verb in ADMIN_VERBS)]
        admin += [s for s in identity.publish if s.startswith(f"{natsauth.API}.CONSUMER.CREATE.")]
        if identity.bootstrap:
            assert admin
        else:
            # Ephemeral KV watches are the only creates any other identity makes:
            # unnamed, on a bucket it reads (the processor's cancellations, the API's
            # listing of a job's failures).
            assert admin in (
                [],
                [f"{natsauth.API}.CONSUMER.CREATE.KV_EMULSION_CANCELLED"],
                [f"{natsauth.API}.CONSUMER.CREATE.KV_EMULSION_JOB_RECORDS"],
            )


def test_no_identity_holds_a_wildcard_on_the_jetstream_api() -> None:
    for identity in natsauth.IDENTITIES.values():
        for subject in identity.publish:
            if subject.startswith("$JS.API."):
                assert ">" not in subject.split(".")[:4], subject
                assert not subject.endswith(".STREAM.>"), subject
            assert subject not in (">", "$JS.>", "$JS.API.>", "$KV.>", "emulsion.>")


def test_the_bootstrap_covers_every_stream_bucket_and_durable() -> None:
    controller = set(natsauth.IDENTITIES["controller"].publish)
    for stream in (*(s.name for s in messaging.STREAMS), *(b.stream for b in messaging.BUCKETS)):
        assert f"$JS.API.STREAM.CREATE.{stream}" in controller
        assert f"$JS.API.STREAM.UPDATE.{stream}" in controller
    for consumer in messaging.CONSUMERS:
        assert f"$JS.API.CONSUMER.DURABLE.CREATE.{consumer.stream}.{consumer.durable}" in controller


def test_every_durable_is_bound_by_exactly_one_identity_that_may_fetch_and_ack_it() -> None:
    for consumer in messaging.CONSUMERS:
        binders = [
            i
            for i in natsauth.IDENTITIES.values()
            if (consumer.stream, consumer.durable) in i.consumers
        ]
        assert len(binders) == 1, consumer.durable
        publish = binders[0].publish
        assert f"$JS.API.CONSUMER.MSG.NEXT.{consumer.stream}.{consumer.durable}" in publish
        assert f"$JS.ACK.{consumer.stream}.{consumer.durable}.>" in publish


def test_stream_subjects_are_published_by_their_producers_only() -> None:
    publishers = {
        subject: {i.name for i in natsauth.IDENTITIES.values() if subject in i.publish}
        for subject in ("emulsion.work.>", "emulsion.events.>", "emulsion.gc.deleted")
    }
    # The processor republishes work it hands back (worker.hand_back).
    assert publishers == {
        "emulsion.work.>": {"controller", "processor"},
        "emulsion.events.>": {"processor"},
        "emulsion.gc.deleted": {"api"},
    }
    assert set(natsauth.PROCESSOR_GC_REASONS) == {"superseded", "stale", "promoted"}


def test_the_clock_bucket_is_read_and_written_by_the_api_and_the_controller_only() -> None:
    writers = {i.name for i in natsauth.IDENTITIES.values() if "$KV.EMULSION_CLOCK.>" in i.publish}
    assert writers == {"api", "controller"}
    assert wire.CLOCK_BUCKET in {b.name for b in messaging.BUCKETS}


def test_server_users_carry_each_identitys_password_and_permissions() -> None:
    users = natsauth.server_users({name: f"pw-{name}" for name in natsauth.IDENTITIES})
    assert [u["user"] for u in users] == list(natsauth.IDENTITIES)
    for user in users:
        identity = natsauth.IDENTITIES[user["user"]]
        assert user["password"] == f"pw-{identity.name}"
        assert user["permissions"]["subscribe"] == {"allow": list(identity.subscribe)}
        allowed = user["permissions"]["publish"]["allow"]
        assert set(allowed) == set(identity.publish) and len(allowed) == len(set(allowed))


def test_the_charts_copy_of_the_table_is_current() -> None:
    result = tools.check("nats_permissions")
    assert result.returncode == 0, result.stderr


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

    monkeypatch.setattr(natsauth, "tls_context", tls_context)
    options = natsauth.connect_options(settings)
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
    assert natsauth.connect_options(load_settings(NatsSettings)) == {
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
    context = natsauth.tls_context(pki.make_ca(tmp_path, "a test CA"))
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "a test CA"),),)]
