"""The controller never stalls unseen: a dead loop fails liveness and ends the process;
readiness says whether the apiserver can be reached; two controllers that pause each
other (equal peering priority) are reported, not left frozen in silence."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

from emulsion_contracts import crd, wire
from emulsion_devstack.processes import ProcessRecord, respawn, stop, wait_for
from emulsion_runtime import messaging


def exit_status(record: ProcessRecord) -> int | None:
    """The process's exit code once it has exited (it is our child), else None."""
    pid, status = os.waitpid(record.pid, os.WNOHANG)
    if pid == 0:
        return None
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else -1


def test_a_result_consumer_that_fails_fails_liveness_and_exits_non_zero(
    controllers: Any, streams: Any, run: Any
) -> None:
    record = controllers.start()
    liveness = controllers.liveness_url(record)
    assert controllers.http_status(liveness) == 200

    async def delete_the_durable() -> None:
        async with streams.session() as js:
            await js.delete_consumer(wire.EVENTS_STREAM, wire.CONTROLLER)

    async def restore() -> None:
        async with streams.session() as js:
            await messaging.ensure_jetstream(js)

    try:
        # Without its durable the result loop can never fold anything again.
        run(delete_the_durable())
        wait_for("liveness to fail", lambda: controllers.http_status(liveness) != 200, 20)
        code = wait_for("the controller to exit", lambda: exit_status(record), 30)
    finally:
        run(restore())
    assert code != 0
    log = Path(record.log).read_text()
    assert "background task results failed" in log
    assert wire.CONTROLLER in log


def test_readiness_follows_the_apiserver(api_proxy: Any, controllers: Any) -> None:
    record = controllers.start({"KUBECONFIG": api_proxy.kubeconfig})
    readiness = controllers.readiness_url(record)
    wait_for("the controller to be ready", lambda: controllers.http_status(readiness) == 200, 30)
    api_proxy.fail_with_503(lambda method, path: True)
    wait_for(
        "readiness to fail with the apiserver",
        lambda: controllers.http_status(readiness) == 503,
        20,
    )
    api_proxy.recover()
    wait_for("readiness to come back", lambda: controllers.http_status(readiness) == 200, 20)


def test_two_controllers_with_one_priority_are_reported_not_silently_frozen(
    controllers: Any, jobs: Any, streams: Any, run: Any
) -> None:
    # The peering object is read every second, not every 10 s: the conflict is seen, and
    # seen to end, a check after it begins and ends.
    same = {**controllers.priority(), "EMULSION_PEERING_CHECK_SECONDS": "1"}
    first = controllers.start(same)
    second = controllers.start(same)
    for record in (first, second):
        readiness = controllers.readiness_url(record)
        wait_for(
            "the conflict to make it unready",
            lambda: controllers.http_status(readiness) == 503,  # noqa: B023
            30,
        )
        assert controllers.metric(record, "emulsion_controller_peering_conflict") == 1
        wait_for(
            "the conflict to be logged as an error",
            lambda: "same peering priority" in Path(record.log).read_text(),  # noqa: B023
            10,
        )

    async def job_runs() -> None:
        async with streams.processing():
            await asyncio.to_thread(jobs.create, "after-conflict", 2)
            # One of them goes: the other resumes, and the job is handled.
            await asyncio.to_thread(controllers.stop, second)
            await asyncio.to_thread(jobs.wait_phase, "after-conflict", crd.Phase.SUCCEEDED, 90)

    run(job_runs())
    wait_for(
        "the survivor to be ready",
        lambda: controllers.http_status(controllers.readiness_url(first)) == 200,
    )
    assert controllers.metric(first, "emulsion_controller_peering_conflict") == 0


def test_a_controller_restarted_in_its_pod_resumes_at_once(
    controllers: Any, jobs: Any, streams: Any, run: Any
) -> None:
    """Killed and started again with the same POD_ID (a container restart), the controller
    is its own peer: it does not wait a peering lifetime (60 s) for the dead one to expire."""
    killed = controllers.start(controllers.priority())
    ready = controllers.readiness_url(killed)
    wait_for("the controller to be ready", lambda: controllers.http_status(ready) == 200, 30)
    os.killpg(killed.pid, signal.SIGKILL)
    wait_for("the controller to die", lambda: not killed.alive(), 15)
    stop(killed)
    controllers.running.remove(killed)
    again = respawn(killed)
    controllers.running.append(again)
    assert again.env["POD_ID"] == killed.env["POD_ID"]

    async def job_runs() -> None:
        async with streams.processing():
            await asyncio.to_thread(jobs.create, "after-restart", 2)
            # Well inside kopf's 60 s peering lifetime of the killed process's record.
            await asyncio.to_thread(jobs.wait_phase, "after-restart", crd.Phase.SUCCEEDED, 30)

    run(job_runs())
