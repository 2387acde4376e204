"""Fair share within the bulk lane, against the real apiserver and NATS: bulk jobs are fed
a window at a time, round-robin across tenants, and a restart or a cancel mid-feed
publishes nothing twice and loses nothing."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from emulsion_contracts import crd, natsauth, wire
from emulsion_contracts.messages import WorkItem
from emulsion_runtime.records_store import JobRecords

from .conftest import metric

# Jobs above 5 items are bulk; 30 items outstanding at most, at least 2 per tenant.
FEED = {
    "EMULSION_INTERACTIVE_MAX_ITEMS": "5",
    "EMULSION_FEED_HIGH_WATER": "30",
    "EMULSION_FEED_MIN_WINDOW": "2",
    "EMULSION_FEED_INTERVAL_SECONDS": "0.5",
}


def create(jobs: Any, name: str, items: int, tenant: str | None = None) -> dict[str, Any]:
    manifest = jobs.manifest(name, items)
    if tenant is not None:
        manifest["metadata"]["labels"] = {crd.LABEL_TENANT: tenant}
    body: dict[str, Any] = jobs.api.create_namespaced_custom_object(
        crd.GROUP, crd.VERSION, jobs.namespace, crd.PLURAL, manifest
    )
    return body


async def queued(streams: Any, namespace: str, name: str) -> list[Any]:
    async with streams.session() as js:
        return list(await streams.read_queue(js, namespace, name))


def cursor(jobs: Any, name: str, uid: str) -> int | None:
    async def read() -> int | None:
        connection = await jobs.stack.nats_connect(natsauth.API_IDENTITY)
        try:
            kv = await connection.jetstream().key_value(wire.RECORDS_BUCKET)
            return await JobRecords(kv).cursor(jobs.namespace, name, uid)
        finally:
            await connection.close()

    return asyncio.run(read())


FEED_ROUNDS = "emulsion_controller_feed_rounds_total"
LOST_RESULT_ROUNDS = "emulsion_controller_lost_result_rounds_total"


def after_rounds(streams: Any, controller: Any, counter: str, rounds: int) -> None:
    """Wait until the controller's periodic loop counted by `counter` ran `rounds` more
    times: what a timed round would do has been done (a condition, not a guessed sleep)."""
    start = metric(controller, counter) or 0.0
    streams.wait_for(
        f"{rounds} more rounds of {counter}",
        lambda: (metric(controller, counter) or 0.0) >= start + rounds,
    )


def test_small_jobs_go_whole_to_the_interactive_lane_bulk_ones_a_window_at_a_time(
    controllers: Any, jobs: Any, streams: Any, run: Any
) -> None:
    controller = controllers.start(FEED)
    small = create(jobs, "small", 5)
    large = create(jobs, "large", 80)
    jobs.wait_phase("small", crd.Phase.QUEUED)
    jobs.wait_phase("large", crd.Phase.QUEUED)
    waiting = streams.wait_for(
        "the window of the large job",
        lambda: m if len(m := run(queued(streams, jobs.namespace, "large"))) == 30 else None,
    )
    after_rounds(streams, controller, FEED_ROUNDS, 2)  # timed refills add nothing
    assert len(run(queued(streams, jobs.namespace, "large"))) == 30
    subjects = {m.subject for m in waiting}
    assert subjects == {wire.work_subject(jobs.namespace, "large", wire.Lane.BULK)}
    indexes = [WorkItem.model_validate_json(m.data).index for m in waiting]
    assert indexes == list(range(30))  # in index order
    assert cursor(jobs, "large", large["metadata"]["uid"]) == 30
    interactive = run(queued(streams, jobs.namespace, "small"))
    assert [m.subject for m in interactive] == [
        wire.work_subject(jobs.namespace, "small", wire.Lane.INTERACTIVE)
    ] * 5
    # A job published whole has no cursor.
    assert cursor(jobs, "small", small["metadata"]["uid"]) is None

    async def process() -> Any:
        async with streams.processing() as processor:
            await asyncio.to_thread(jobs.wait_phase, "large", crd.Phase.SUCCEEDED)
            await asyncio.to_thread(jobs.wait_phase, "small", crd.Phase.SUCCEEDED)
            return processor

    processor = run(process())
    uid = large["metadata"]["uid"]
    assert {i: n for (u, i), n in processor.processed.items() if u == uid} == {
        i: 1 for i in range(80)
    }
    assert cursor(jobs, "large", uid) == 80


ITEMS = 150


def test_three_bulk_tenants_share_the_stream_round_robin(
    controllers: Any, jobs: Any, streams: Any, run: Any
) -> None:
    controllers.start(FEED)
    uids = {}
    for tenant in ("a", "b", "c"):
        body = create(jobs, f"gallery-{tenant}", ITEMS, tenant=tenant)
        uids[body["metadata"]["uid"]] = tenant

    def windows() -> int | None:
        queues = [len(run(queued(streams, jobs.namespace, f"gallery-{t}"))) for t in "abc"]
        # The first one may have had the whole high water before the others came.
        return sum(queues) if min(queues) >= 10 else None

    first = streams.wait_for("every tenant's window", windows)
    order: list[str] = []

    def outcome(work: WorkItem) -> str | None:
        if work.job.uid in uids:
            order.append(uids[work.job.uid])
        return None

    async def process() -> None:
        async with streams.processing(outcome):
            for tenant in ("a", "b", "c"):
                await asyncio.to_thread(
                    jobs.wait_phase, f"gallery-{tenant}", crd.Phase.SUCCEEDED, timeout=120
                )

    run(process())
    assert Counter(order) == {"a": ITEMS, "b": ITEMS, "c": ITEMS}
    # Past what was queued before processing began, each tenant has a third of the
    # stream (its window of 10) until the first one runs out of items. Results come back
    # in bursts (the stand-in takes 100 messages a fetch), so a tenant's refills do too:
    # fair over a few windows, not item by item.
    first_done = min(len(order) - order[::-1].index(t) for t in "abc")
    steady = order[first : first_done - 10]
    assert len(steady) >= 240, "".join(order)
    shares = Counter(steady)
    assert all(abs(shares[t] - len(steady) / 3) <= len(steady) / 3 * 0.15 for t in "abc"), (
        shares,
        "".join(order),
    )
    for start in range(0, len(steady) - 90, 30):
        shares = Counter(steady[start : start + 90])
        assert all(shares[t] >= 15 for t in "abc"), (shares, "".join(order))


def test_a_restart_mid_feed_publishes_nothing_twice_and_loses_nothing(
    controllers: Any, jobs: Any, streams: Any, run: Any
) -> None:
    items = 120
    first = controllers.start(FEED)
    body = create(jobs, "restarted", items, tenant="a")
    uid = body["metadata"]["uid"]
    jobs.wait_phase("restarted", crd.Phase.QUEUED)

    def slowly(work: WorkItem) -> str | None:
        time.sleep(0.02)
        return None

    async def scenario() -> Any:
        async with streams.processing(slowly) as processor:
            await asyncio.to_thread(
                streams.wait_for,
                "a third of the items done",
                lambda: sum(n for (u, _), n in processor.processed.items() if u == uid) >= 40,
            )
            await asyncio.to_thread(controllers.kill, first)
            killed_at = sum(n for (u, _), n in processor.processed.items() if u == uid)
            await asyncio.to_thread(controllers.start, FEED)
            # (Results the killed controller took unacknowledged come again after their
            # ack wait, 30 s.)
            await asyncio.to_thread(jobs.wait_phase, "restarted", crd.Phase.SUCCEEDED, timeout=120)
            return processor, killed_at

    processor, killed_at = run(scenario())
    assert killed_at < items  # it was killed mid-feed
    processed = {i: n for (u, i), n in processor.processed.items() if u == uid}
    assert processed == {i: 1 for i in range(items)}
    assert jobs.outcomes("restarted").succeeded == f"0-{items - 1}"
    assert cursor(jobs, "restarted", uid) == items


def test_a_job_deleted_mid_feed_is_purged_and_fed_no_more(
    controllers: Any, jobs: Any, streams: Any, run: Any
) -> None:
    controller = controllers.start(FEED)
    create(jobs, "doomed", 80, tenant="a")
    other = create(jobs, "other", 40, tenant="b")
    # Whichever the controller saw first may have had the whole high water (30) before
    # the other came; each has at least its share (15) out then.
    streams.wait_for(
        "both windows full",
        lambda: (
            len(run(queued(streams, jobs.namespace, "doomed"))) >= 15
            and len(run(queued(streams, jobs.namespace, "other"))) >= 15
        ),
    )
    doomed_depth = 'emulsion_queue_depth{lane="bulk",tenant="a"}'
    streams.wait_for("the doomed job's queue reported", lambda: metric(controller, doomed_depth))
    jobs.delete("doomed")
    streams.wait_for("the job to go", lambda: jobs.get("doomed") is None)
    # Its tenant's queue leaves the gauges once the feeder has forgotten the job, after
    # which no refill can publish any of it.
    streams.wait_for("the doomed job forgotten", lambda: metric(controller, doomed_depth) is None)
    assert run(queued(streams, jobs.namespace, "doomed")) == []

    async def process() -> Any:
        async with streams.processing() as processor:
            await asyncio.to_thread(jobs.wait_phase, "other", crd.Phase.SUCCEEDED)
            return processor

    processor = run(process())
    uid = other["metadata"]["uid"]
    # The other tenant alone now: its whole job went through.
    assert {i: n for (u, i), n in processor.processed.items() if u == uid} == {
        i: 1 for i in range(40)
    }
    assert run(queued(streams, jobs.namespace, "doomed")) == []


def test_lost_results_look_only_at_published_items(
    controllers: Any, jobs: Any, streams: Any, run: Any
) -> None:
    """Items the feeder holds back are waiting, not lost: nothing is re-dispatched."""
    controller = controllers.start(
        {
            **FEED,
            "EMULSION_RESULT_DEADLINE_SECONDS": "1",
            "EMULSION_RECONCILE_INTERVAL_SECONDS": "0.3",
        }
    )
    create(jobs, "patient", 80)
    jobs.wait_phase("patient", crd.Phase.QUEUED)
    streams.wait_for(
        "the window",
        lambda: len(run(queued(streams, jobs.namespace, "patient"))) == 30 or None,
    )
    # Rounds are at least 0.3 s apart: 8 more take 2.1 s, several rounds past the deadline.
    after_rounds(streams, controller, LOST_RESULT_ROUNDS, 8)
    messages = run(queued(streams, jobs.namespace, "patient"))
    assert len(messages) == 30
    assert all(wire.HEADER_MSG_ID in m.headers for m in messages)
    assert [m.headers[wire.HEADER_MSG_ID].count("/") for m in messages] == [1] * 30
