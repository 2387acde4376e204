"""NATS has a door: every client needs credentials and TLS, and each
service's identity may publish and subscribe exactly what the table in
`emulsion_contracts.natsauth` says.

The matrix is derived from the table: for each identity, every subject the table names
(its own and every other identity's) and a set of subjects nobody owns (other streams,
stream creation and deletion, other inboxes, KV buckets), probed as a real client of that
identity on the stack's NATS. A probe is a publish (or a subscribe) followed by a flush:
the server answers a refused one with a permission error before the flush's PONG, so
after the flush the answer is known, without waiting on a clock.

Probes change nothing: every publish carries `{` as its body (JetStream's API answers
"invalid JSON" and does nothing; without a reply subject it does not even answer) and a
`Nats-Expected-Stream` header no stream has, so a stream refuses to store it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from nats.js.api import RetentionPolicy

from emulsion_contracts import natsauth, wire
from emulsion_devstack import natsauth as devstack_nats
from emulsion_devstack import pki
from emulsion_devstack.stack import Endpoints
from emulsion_runtime import messaging

PROBE_BODY = b"{"
PROBE_HEADERS = {"Nats-Expected-Stream": "EMULSION_MATRIX_PROBE_NO_SUCH_STREAM"}
# nats-server words it "Permissions Violation for Publish to ..."; nats-py lowercases it.
VIOLATION = "permissions violation"
# How long the server may take to answer one probe (it answers in microseconds).
BARRIER_DEADLINE = 10.0


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: `*` is one token, a final `>` one or more."""
    wanted, given = pattern.split("."), subject.split(".")
    for index, token in enumerate(wanted):
        if token == ">":
            return len(given) > index
        if index >= len(given) or (token != "*" and token != given[index]):
            return False
    return len(wanted) == len(given)


def concrete(pattern: str) -> str:
    """A subject `pattern` matches (`*` and `>` filled in)."""
    return ".".join(
        "probe" if t == "*" else "matrix.probe" if t == ">" else t for t in pattern.split(".")
    )


def allowed(patterns: Iterable[str], subject: str) -> bool:
    return any(matches(pattern, subject) for pattern in patterns)


# Subjects nobody's table entry is built from: what an intruder inside the cluster tries.
UNOWNED_PUBLISH = (
    f"$JS.API.STREAM.CREATE.{wire.WORK_STREAM}",
    "$JS.API.STREAM.CREATE.EMULSION_INTRUDER",
    f"$JS.API.STREAM.DELETE.{wire.WORK_STREAM}",
    f"$JS.API.STREAM.PURGE.{wire.GC_STREAM}",
    f"$JS.API.STREAM.MSG.GET.{wire.GC_STREAM}",
    f"$JS.API.STREAM.INFO.{wire.EVENTS_STREAM}",
    "$JS.API.STREAM.LIST",
    "$JS.API.STREAM.NAMES",
    "$JS.API.INFO",
    f"$JS.API.CONSUMER.DELETE.{wire.WORK_STREAM}.{wire.PROCESSORS}",
    f"$JS.API.CONSUMER.CREATE.{wire.WORK_STREAM}",
    f"$JS.API.CONSUMER.DURABLE.CREATE.{wire.WORK_STREAM}.intruder",
    f"$JS.API.CONSUMER.MSG.NEXT.{wire.WORK_STREAM}.intruder",
    "emulsion.work.tenant-b.forged",
    "emulsion.events.tenant-b.forged",
    "emulsion.gc.deleted",
    "emulsion.gc.abandoned",
    "emulsion.other",
    "_INBOX.probe",
    *(f"_INBOX_{name}.probe" for name in natsauth.IDENTITIES),
    *(f"$KV.{bucket.name}.probe" for bucket in messaging.BUCKETS),
    *(f"$JS.API.STREAM.MSG.GET.{bucket.stream}" for bucket in messaging.BUCKETS),
    *(f"$JS.API.STREAM.PURGE.{bucket.stream}" for bucket in messaging.BUCKETS),
    *(f"$JS.ACK.{c.stream}.{c.durable}.1.1.1.1.1.1" for c in messaging.CONSUMERS),
)
SUBSCRIBE = (
    ">",
    "emulsion.>",
    "emulsion.work.>",
    "emulsion.events.>",
    "emulsion.gc.>",
    "$JS.API.>",
    "$JS.EVENT.>",
    "_INBOX.>",
    *(f"_INBOX_{name}.>" for name in natsauth.IDENTITIES),
    *(f"_INBOX_{name}.probe" for name in natsauth.IDENTITIES),
    *(f"$KV.{bucket.name}.>" for bucket in messaging.BUCKETS),
)


def publish_candidates() -> list[str]:
    every_pattern = {p for i in natsauth.IDENTITIES.values() for p in i.publish}
    return sorted({*(concrete(p) for p in every_pattern), *UNOWNED_PUBLISH})


class Probe:
    """One client of one identity, recording the server's permission errors.

    The server answers each command in order, so a probe's answer is known once the
    answer to a later command is: after each probe, a publish on a barrier subject nobody
    may publish to (`matrix.barrier.<n>`), whose refusal the probe waits for (with a
    deadline). A flush would not do: nats-py writes its PING ahead of publishes still
    buffered.
    """

    def __init__(self) -> None:
        self.violations: list[str] = []
        self.client: Any = None
        self._barriers = 0
        self._barrier = asyncio.Event()
        self._waiting_for = ""

    async def error(self, error: Exception) -> None:
        text = str(error).lower()
        if VIOLATION in text:
            self.violations.append(text)
            if self._waiting_for and f'"{self._waiting_for}"' in text:
                self._barrier.set()

    async def _answered(self) -> list[str]:
        """The violations the server reported since the last barrier, this probe's."""
        seen = len(self.violations)
        self._barriers += 1
        self._waiting_for = f"matrix.barrier.{self._barriers}"
        self._barrier.clear()
        await self.client.publish(self._waiting_for, b"")
        await asyncio.wait_for(self._barrier.wait(), BARRIER_DEADLINE)
        return [v for v in self.violations[seen:] if "matrix.barrier." not in v]

    async def refused_publish(self, subject: str) -> bool:
        await self.client.publish(subject, PROBE_BODY, headers=PROBE_HEADERS)
        answers = await self._answered()
        return any(f'publish to "{subject.lower()}"' in v for v in answers)

    async def refused_subscribe(self, subject: str) -> bool:
        subscription = await self.client.subscribe(subject)
        answers = await self._answered()
        await subscription.unsubscribe()
        return any(f'subscription to "{subject.lower()}"' in v for v in answers)


async def probe_matrix(stack: Endpoints, name: str) -> list[str]:
    """Every difference between what `name` may do per the table and what the server lets it."""
    identity = natsauth.IDENTITIES[name]
    probe = Probe()
    probe.client = await stack.nats_connect(name, error_cb=probe.error, allow_reconnect=False)
    wrong: list[str] = []
    try:
        for subject in publish_candidates():
            expected = allowed(identity.publish, subject)
            if (not await probe.refused_publish(subject)) != expected:
                wrong.append(f"{name} publish {subject}: table says {expected}")
        for subject in SUBSCRIBE:
            expected = allowed(identity.subscribe, subject)
            if (not await probe.refused_subscribe(subject)) != expected:
                wrong.append(f"{name} subscribe {subject}: table says {expected}")
    finally:
        await probe.client.close()
    return wrong


def test_the_subject_matcher_follows_nats_rules() -> None:
    assert matches("a.>", "a.b.c") and not matches("a.>", "a")
    assert matches("a.*.c", "a.b.c") and not matches("a.*", "a.b.c")
    assert matches("$KV.B.>", concrete("$KV.B.>")) and concrete("x.*") == "x.probe"


@pytest.mark.parametrize("identity", sorted(natsauth.IDENTITIES))
def test_each_identity_may_publish_and_subscribe_exactly_what_the_table_says(
    stack: Endpoints, run: Any, identity: str
) -> None:
    own = natsauth.IDENTITIES[identity]
    candidates = publish_candidates()
    # The matrix probes both sides for every identity: things it may do, and things it may not.
    assert any(allowed(own.publish, s) for s in candidates)
    assert any(not allowed(own.publish, s) for s in candidates)
    assert run(probe_matrix(stack, identity)) == []


def test_no_service_identity_may_create_a_stream_of_its_own(stack: Endpoints, run: Any) -> None:
    """The API call itself, end to end: the server drops it unanswered, for every
    identity; even the controller may create only Emulsion's own streams."""
    name = f"EMULSION_MATRIX_{uuid.uuid4().hex[:8].upper()}"
    spec = messaging.StreamSpec(name, (f"matrix-{name.lower()}.>",), RetentionPolicy.LIMITS, 60)

    async def create_as(identity: str) -> str:
        client = await stack.nats_connect(identity, allow_reconnect=False)
        try:
            await client.jetstream(timeout=2).add_stream(spec.config())
            return "created"
        except nats.errors.TimeoutError:
            return "no answer"  # the server dropped the refused request
        finally:
            await client.close()

    async def scenario() -> dict[str, str]:
        answers = {i: await create_as(i) for i in natsauth.IDENTITIES}
        admin = await stack.nats_connect()
        try:
            names = await admin.jetstream().streams_info()
            answers["created by a service"] = str(any(s.config.name == name for s in names))
        finally:
            await admin.close()
        return answers

    assert run(scenario()) == {
        **{identity: "no answer" for identity in natsauth.IDENTITIES},
        "created by a service": "False",
    }


def test_a_client_without_credentials_or_with_a_wrong_password_is_refused(
    stack: Endpoints, run: Any, tmp_path: Path
) -> None:
    context = messaging.tls_context(stack.nats_ca_file)
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")

    async def attempt(**credentials: str) -> str:
        try:
            client = await nats.connect(
                stack.nats_url,
                tls=context,
                allow_reconnect=False,
                max_reconnect_attempts=0,
                connect_timeout=5,
                **credentials,
            )
        except Exception as error:
            return type(error).__name__ + ": " + str(error)
        await client.close()
        return "connected"

    anonymous = run(attempt())
    wrong_password = run(attempt(user="processor", password="not-the-password"))
    assert "Authorization" in anonymous, anonymous
    assert "Authorization" in wrong_password, wrong_password


def test_a_plain_connection_is_refused_even_with_valid_credentials(stack: Endpoints) -> None:
    """A client that does not start TLS gets the server's refusal, not a session: the
    connection is told TLS is required and closed."""
    host, port = stack.nats_url.removeprefix("tls://").rsplit(":", 1)
    password = Path(stack.nats_auth_dir, f"{devstack_nats.ADMIN}.password").read_text().strip()
    with socket.create_connection((host, int(port)), timeout=5) as plain:
        info = plain.recv(65536)
        assert b'"tls_required":true' in info
        connect = json.dumps(
            {"verbose": False, "pedantic": False, "user": devstack_nats.ADMIN, "pass": password}
        )
        plain.sendall(f"CONNECT {connect}\r\nPING\r\n".encode())
        answer = b""
        while chunk := plain.recv(65536):  # until the server closes the connection
            answer += chunk
    assert b"PONG" not in answer
    assert answer == b"" or b"-ERR" in answer, answer


def test_the_server_must_prove_itself_with_the_configured_ca(
    stack: Endpoints, run: Any, tmp_path: Path
) -> None:
    other_ca = pki.make_ca(tmp_path / "other", "not the NATS CA")
    password = Path(stack.nats_auth_dir, f"{devstack_nats.ADMIN}.password").read_text().strip()

    async def attempt(ca: Path | str) -> str:
        try:
            client = await nats.connect(
                stack.nats_url,
                tls=messaging.tls_context(ca),
                user=devstack_nats.ADMIN,
                password=password,
                allow_reconnect=False,
                max_reconnect_attempts=0,
                connect_timeout=5,
            )
        except (ssl.SSLError, nats.errors.Error, OSError) as error:
            return f"refused: {type(error).__name__}: {error}"
        await client.close()
        return "connected"

    assert run(attempt(stack.nats_ca_file)) == "connected"
    refused = run(attempt(other_ca))
    assert refused.startswith("refused") and "CERTIFICATE_VERIFY_FAILED" in refused, refused
