"""The queue gauges: per lane and tenant, cardinality bounded, totals and ages exact."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from emulsion_contracts.wire import Lane
from emulsion_controller import queue_metrics
from emulsion_controller.backlog import LaneDepth
from emulsion_controller.queue_metrics import OTHER, QueueFigure, QueueGauges, bounded

NOW = 1000.0


def depth(lane: Lane, tenant: str, waiting: int, since: float | None) -> LaneDepth:
    return LaneDepth(lane=lane, tenant=tenant, waiting=waiting, oldest_waiting_since=since)


def sample(name: str, lane: str, tenant: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"lane": lane, "tenant": tenant})


def test_the_deepest_tenants_keep_their_label_and_the_rest_are_other() -> None:
    snapshot = [
        depth(Lane.BULK, "a" * 16, 5000, 900.0),
        depth(Lane.BULK, "b" * 16, 30, 990.0),
        depth(Lane.BULK, "c" * 16, 20, 950.0),
        depth(Lane.BULK, "ns:photos", 10, 800.0),
        depth(Lane.INTERACTIVE, "b" * 16, 1, 999.5),
        depth(Lane.INTERACTIVE, "c" * 16, 0, None),  # nothing waits: no series
    ]
    assert bounded(snapshot, NOW, top=2) == {
        (Lane.BULK, "a" * 16): QueueFigure(5000, 100.0),
        (Lane.BULK, "b" * 16): QueueFigure(30, 10.0),
        # c and ns:photos: their sum, and the older of their two oldest items.
        (Lane.BULK, OTHER): QueueFigure(30, 200.0),
        (Lane.INTERACTIVE, "b" * 16): QueueFigure(1, 0.5),
    }


def test_ties_are_broken_by_tenant_and_entries_of_one_tenant_add_up() -> None:
    snapshot = [
        depth(Lane.BULK, "z", 5, 990.0),
        depth(Lane.BULK, "y", 5, None),
        depth(Lane.BULK, "z", 2, 980.0),
    ]
    # z: 7 items, oldest 980; y: 5 items, since unknown (age 0, not negative).
    assert bounded(snapshot, NOW, top=1) == {
        (Lane.BULK, "z"): QueueFigure(7, 20.0),
        (Lane.BULK, OTHER): QueueFigure(5, 0.0),
    }
    assert bounded(snapshot[:2], NOW, top=1)[(Lane.BULK, "y")] == QueueFigure(5, 0.0)
    # A clock read before the item was accepted is no negative age.
    assert bounded([depth(Lane.BULK, "x", 1, NOW + 1)], NOW) == {
        (Lane.BULK, "x"): QueueFigure(1, 0.0)
    }


def test_export_sets_the_gauges_and_removes_series_that_no_longer_wait() -> None:
    gauges = QueueGauges(top=1)
    gauges.export([depth(Lane.BULK, "t-one", 9, 990.0), depth(Lane.BULK, "t-two", 3, 995.0)], NOW)
    assert sample("emulsion_queue_depth", "bulk", "t-one") == 9
    assert sample("emulsion_queue_depth", "bulk", OTHER) == 3
    assert sample("emulsion_queue_oldest_age_seconds", "bulk", OTHER) == 5.0
    # t-one's work finished; t-two is now alone and gets its own label.
    gauges.export([depth(Lane.BULK, "t-two", 2, 995.0)], NOW + 10)
    assert sample("emulsion_queue_depth", "bulk", "t-one") is None
    assert sample("emulsion_queue_oldest_age_seconds", "bulk", "t-one") is None
    assert sample("emulsion_queue_depth", "bulk", OTHER) is None
    assert sample("emulsion_queue_depth", "bulk", "t-two") == 2
    assert sample("emulsion_queue_oldest_age_seconds", "bulk", "t-two") == 15.0
    gauges.export([], NOW + 20)
    assert sample("emulsion_queue_depth", "bulk", "t-two") is None


def test_the_module_exporter_is_one_for_the_process() -> None:
    figures = queue_metrics.export([depth(Lane.INTERACTIVE, "t-module", 1, NOW - 2)], NOW)
    assert figures == {(Lane.INTERACTIVE, "t-module"): QueueFigure(1, 2.0)}
    assert sample("emulsion_queue_depth", "interactive", "t-module") == 1
    queue_metrics.export([], NOW)
    assert sample("emulsion_queue_depth", "interactive", "t-module") is None


entries = st.builds(
    LaneDepth,
    lane=st.sampled_from(list(Lane)),
    tenant=st.sampled_from([f"{n:016x}" for n in range(12)] + ["ns:a", "ns:b", OTHER]),
    waiting=st.integers(min_value=0, max_value=10_000),
    oldest_waiting_since=st.one_of(st.none(), st.floats(min_value=0, max_value=2 * NOW)),
)


@given(snapshot=st.lists(entries, max_size=60), top=st.integers(min_value=0, max_value=6))
def test_bounded_cardinality_exact_totals_and_the_oldest_age(
    snapshot: list[LaneDepth], top: int
) -> None:
    figures = bounded(snapshot, NOW, top)
    for lane in Lane:
        waiting = [e for e in snapshot if e.lane == lane and e.waiting > 0]
        exported = {t: f for (of, t), f in figures.items() if of == lane}
        # At most `top` tenants of their own, plus "other".
        assert len(exported) <= top + 1
        assert len([t for t in exported if t != OTHER]) <= top
        # Nothing lost, nothing counted twice: the lane's total is exact.
        assert sum(f.depth for f in exported.values()) == sum(e.waiting for e in waiting)
        assert all(f.depth > 0 for f in exported.values())
        # The lane's oldest age is the oldest item's, wherever it was folded.
        ages = [
            max(0.0, NOW - e.oldest_waiting_since)
            for e in waiting
            if e.oldest_waiting_since is not None
        ]
        assert max((f.oldest_age_seconds for f in exported.values()), default=0.0) == max(
            ages, default=0.0
        )
        # A tenant with a label of its own is at least as deep as any tenant folded away.
        totals: dict[str, int] = {}
        for e in waiting:
            totals[e.tenant] = totals.get(e.tenant, 0) + e.waiting
        named = [t for t in exported if t != OTHER]
        folded = [t for t in totals if t not in named and t != OTHER]
        if named and folded:
            assert min(totals[t] for t in named) >= max(totals[t] for t in folded)
        for tenant in named:
            assert exported[tenant].depth == totals[tenant]
