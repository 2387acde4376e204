"""The controller's apiserver calls give up on a server that accepted the connection and
never answers (restarting, partitioned): each raises within its timeout instead of holding
a status writer, and every result of its job, for ever."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from kubernetes import client

from emulsion_controller.apiserver import Kube
from emulsion_runtime.ingestjobs import KubeTimeout

TIMEOUT = (0.5, 0.5)
# Well above the read bound (the client retries nothing), and far below "never".
DEADLINE_SECONDS = 10.0

CALLS: dict[str, Callable[[Kube], Awaitable[Any]]] = {
    "get_job": lambda kube: kube.get_job("default", "job"),
    "patch_status": lambda kube: kube.patch_status("default", "job", "uid", {"phase": "Running"}),
    "delete_job": lambda kube: kube.delete_job("default", "job", "uid"),
    "post_event": lambda kube: kube.post_event("default", {"kind": "Event"}),
    "ensure_cluster_peering": lambda kube: kube.ensure_cluster_peering("peering"),
    "get_cluster_peering": lambda kube: kube.get_cluster_peering("peering"),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_every_call_to_an_apiserver_that_never_answers_fails_within_its_timeout(
    silent_apiserver: client.Configuration, call: str
) -> None:
    kube = Kube(silent_apiserver, concurrency=2, request_timeout=TIMEOUT)

    async def attempt() -> BaseException | None:
        try:
            await asyncio.wait_for(CALLS[call](kube), DEADLINE_SECONDS)
        except TimeoutError as error:
            # The client's own bound is a KubeTimeout; wait_for's plain one is the defect.
            return error if isinstance(error, KubeTimeout) else None
        except Exception as error:
            return error
        finally:
            await kube.close()
        raise AssertionError("a server that never answers cannot have answered")

    error = asyncio.run(attempt())
    assert error is not None, f"{call} still waited after {DEADLINE_SECONDS:.0f} s"
    assert "timed out" in str(error).lower()
