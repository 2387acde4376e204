"""Staging leases on the real NATS: written as the controller writes them, read as the
janitor reads them. A lease is per (job, upload), so one job's release cannot expose an
upload another running job still needs.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from emulsion_contracts import keys, wire
from emulsion_controller.jetstream import Bus as ControllerBus
from emulsion_devstack.stack import Endpoints
from emulsion_janitor.leases import KvLeases

from .conftest import connected


def test_an_upload_stays_leased_until_every_job_using_it_has_released_it(
    stack: Endpoints, run: Any
) -> None:
    upload, other_upload = keys.new_ulid(), keys.new_ulid()
    first, second = str(uuid.uuid4()), str(uuid.uuid4())

    async def scenario() -> list[bool]:
        async with connected(stack) as bus:
            js = bus.js
            controller = ControllerBus(
                bus.connection,
                js,
                await js.key_value(wire.STAGING_LEASES_BUCKET),
                await js.key_value(wire.CANCELLED_BUCKET),
                stack.work_signing_key(),
            )
            leases = await KvLeases.bind(js)
            seen = [await leases.held(upload)]
            await controller.lease(first, [upload])
            await controller.lease(second, [upload, other_upload])
            seen.append(await leases.held(upload))
            # The second job (the last to lease) finishes first; the first still runs.
            await controller.release(second, [upload, other_upload])
            seen += [await leases.held(upload), await leases.held(other_upload)]
            await controller.release(second, [upload])  # released twice: harmless
            seen.append(await leases.held(upload))
            await controller.release(first, [upload])
            seen.append(await leases.held(upload))
            return seen

    assert run(scenario()) == [False, True, True, False, True, False]


def test_a_lease_written_before_leases_were_per_job_still_holds(stack: Endpoints, run: Any) -> None:
    upload = keys.new_ulid()

    async def scenario() -> tuple[bool, bool]:
        async with connected(stack) as bus:
            kv = await bus.js.key_value(wire.STAGING_LEASES_BUCKET)
            leases = await KvLeases.bind(bus.js)
            await kv.put(upload, b"job-uid")
            held = await leases.held(upload)
            await kv.delete(upload)
            return held, await leases.held(upload)

    assert run(scenario()) == (True, False)


@pytest.mark.parametrize(
    ("upload", "job"), [("a.b", "uid"), ("01J", "u.id"), ("01J", "*"), ("01J", ""), ("", "uid")]
)
def test_a_lease_key_has_exactly_two_parts(upload: str, job: str) -> None:
    with pytest.raises(ValueError, match="lease key"):
        wire.staging_lease_key(upload, job)
