"""An apiserver that answers 503 for a while: the status writer backs off instead of
hammering it, keeps one pending acknowledgement per item however often JetStream
redelivers, and folds everything once the apiserver is back."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from emulsion_contracts import crd, wire
from emulsion_devstack.processes import wait_for
from tests.consumers import redelivered_after

ITEMS = 10
# Short enough for a test; the point is that retries are spread out, not how far.
RETRY_CEILING = 4.0
# The results' redelivery wait: long enough for several spread-out retries meanwhile.
REDELIVERY = 5.0


def test_an_apiserver_answering_503_is_retried_slowly_and_nothing_is_lost(
    api_proxy: Any, controllers: Any, jobs: Any, streams: Any, run: Any
) -> None:
    environment = {
        "KUBECONFIG": api_proxy.kubeconfig,
        "EMULSION_STATUS_RETRY_CEILING_SECONDS": str(RETRY_CEILING),
    }
    first = controllers.start(environment)
    jobs.create("outage", ITEMS)
    jobs.wait_phase("outage", crd.Phase.QUEUED)
    # A controller with nothing of the job in memory: the first result makes it read the job.
    controllers.kill(first)
    job_path = f"/apis/{crd.GROUP}/{crd.VERSION}/namespaces/{jobs.namespace}/{crd.PLURAL}/outage"
    api_proxy.fail_with_503(lambda method, path: path.startswith(job_path))

    def on_the_job(request: Any) -> bool:
        return bool(request.path.startswith(job_path))

    began = time.monotonic()
    record = controllers.start(environment)
    held: list[float | None] = []

    async def processed() -> None:
        async with streams.processing() as processor:
            await streams.wait_for_async(
                "every item to be processed", lambda: len(processor.processed) == ITEMS
            )

    async def redelivered() -> int:
        async with streams.session() as js:
            # Until JetStream has delivered every result again (ack_wait), the controller
            # has been holding them unwritten; what it keeps meanwhile must stay bounded.
            deadline = time.monotonic() + 90
            while True:
                held.append(controllers.metric(record, "emulsion_controller_results_held"))
                info = await js.consumer_info(wire.EVENTS_STREAM, wire.CONTROLLER)
                if info.num_redelivered >= ITEMS:
                    return int(info.num_redelivered)
                assert time.monotonic() < deadline, f"no redelivery yet: {info}"
                await asyncio.sleep(0.5)

    run(processed())
    # The redelivery, not the durable's 30 s AckWait, is what is tested: shortened once the
    # controller (which puts the configured wait back when it starts) is consuming.
    with redelivered_after(streams.stack, wire.CONTROLLER, seconds=REDELIVERY):
        run(redelivered())
    # The outage lasts until the writer has tried a third time: how many tries fit before
    # the redelivery depends on how fast the controller started, not on the writer.
    wait_for(
        "the writer to retry (a third call for the job)",
        lambda: api_proxy.requested(began, time.monotonic(), on_the_job) >= 3,
        timeout=6 * RETRY_CEILING,
    )
    ended = time.monotonic()
    api_proxy.recover()
    status = jobs.wait_phase("outage", crd.Phase.SUCCEEDED, timeout=60)

    calls = api_proxy.requested(began, ended, on_the_job)
    seconds = ended - began
    # Backed off, not in a loop: a writer retrying at once makes dozens of calls a second.
    # The line leaves room for the backoff's first short steps (0.5-1 s, 1-2 s) in a window
    # of only ~7 s, where 1 call/s was met or missed at random.
    assert calls / seconds < 2.0, f"{calls} calls in {seconds:.0f} s"
    # One held result per item, however many deliveries came meanwhile.
    assert None not in held
    assert max(h or 0 for h in held) <= ITEMS, held
    assert status["succeeded"] == ITEMS
    assert jobs.outcomes("outage").succeeded == f"0-{ITEMS - 1}"
