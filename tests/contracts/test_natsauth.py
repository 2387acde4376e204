"""The NATS permission table: least privilege by construction."""

from __future__ import annotations

import pytest

from emulsion_contracts import natsauth
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


def test_server_users_carry_each_identitys_password_and_permissions() -> None:
    users = natsauth.server_users({name: f"pw-{name}" for name in natsauth.IDENTITIES})
    assert [u["user"] for u in users] == list(natsauth.IDENTITIES)
    for user in users:
        identity = natsauth.IDENTITIES[user["user"]]
        assert user["password"] == f"pw-{identity.name}"
        assert user["permissions"]["subscribe"] == {"allow": list(identity.subscribe)}
        allowed = user["permissions"]["publish"]["allow"]
        assert set(allowed) == set(identity.publish) and len(allowed) == len(set(allowed))


# Integration, not `make unit`: runs the generating tool as a process (see tests/conftest.py).
@pytest.mark.integration
def test_the_charts_copy_of_the_table_is_current() -> None:
    result = tools.check("nats_permissions")
    assert result.returncode == 0, result.stderr
