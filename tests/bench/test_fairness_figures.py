"""make bench-fairness's figures from recorded times: rates, latencies, shares, targets."""

from __future__ import annotations

from typing import Any

import pytest

from emulsion_bench import fairness_figures as figures


def test_steady_rate_leaves_out_the_head_and_the_tail() -> None:
    # 100 results one a second after a 30 s ramp; a straggler 100 s later.
    times = [30.0 + n for n in range(99)] + [230.0]
    # Between the 10th (t=39) and the 90th (t=119) result: 80 results in 80 s.
    assert figures.steady_rate(times) == pytest.approx(1.0)
    assert figures.steady_rate(list(reversed(times))) == pytest.approx(1.0)
    assert figures.steady_rate([]) == 0.0
    assert figures.steady_rate([5.0]) == 0.0
    assert figures.steady_rate([5.0, 5.0, 5.0]) == 0.0


def test_latency_summary_is_nearest_rank() -> None:
    seconds = [0.5 + 0.1 * n for n in range(20)]  # 0.5 .. 2.4
    summary = figures.latency_summary(seconds)
    assert summary is not None
    assert summary.count == 20
    assert summary.p50_seconds == pytest.approx(1.4)  # the 10th of 20
    assert summary.p95_seconds == pytest.approx(2.3)  # the 19th of 20
    assert summary.max_seconds == pytest.approx(2.4)
    assert figures.latency_summary([]) is None


def test_shares_count_buckets_after_the_skip_until_the_first_tenant_is_done() -> None:
    results: list[tuple[float, str]] = []
    # Three tenants, one result each a second for 0..89 s; c3 runs out at 69 s, and the
    # first 30 s c1 takes everything (the ramp, not counted).
    for second in range(90):
        if second < 30:
            results.append((second + 0.5, "c1"))
            continue
        results.append((second + 0.1, "c1"))
        results.append((second + 0.2, "c2"))
        if second < 70:
            results.append((second + 0.3, "c3"))
    found = figures.shares(results, ["c1", "c2", "c3"], bucket_seconds=10, skip_seconds=30)
    assert found.first_done_seconds == pytest.approx(69.3)
    # 30-40, 40-50, 50-60: 60-70 ends after c3's last result.
    assert [(b["start"], b["end"]) for b in found.buckets] == [(30, 40), (40, 50), (50, 60)]
    assert found.max_deviation == pytest.approx(0.0)
    assert found.overall == pytest.approx({"c1": 1 / 3, "c2": 1 / 3, "c3": 1 / 3})
    # Counted from the start, c1's ramp makes the first bucket all c1's.
    early = figures.shares(results, ["c1", "c2", "c3"], bucket_seconds=10, skip_seconds=0)
    assert early.buckets[0]["shares"] == {"c1": 1.0, "c2": 0.0, "c3": 0.0}
    assert early.max_deviation == pytest.approx(2.0)


def test_shares_deviation_is_relative_to_an_equal_share() -> None:
    # Per 10 s: 44 / 33 / 23 results of 100: 32 % above and 31 % below a third.
    results = [
        (second + offset / 100, tenant)
        for second in range(0, 100, 10)
        for tenant, many in (("a", 44), ("b", 33), ("c", 23))
        for offset in range(many)
    ]
    results.append((200.0, "a"))
    results.append((200.0, "b"))
    results.append((200.0, "c"))
    found = figures.shares(results, ["a", "b", "c"], bucket_seconds=10, skip_seconds=0)
    assert len(found.buckets) == 10
    assert found.max_deviation == pytest.approx(0.32)
    # A tenant that never produced a result: nothing is counted.
    assert figures.shares(results, ["a", "b", "x"]).max_deviation is None
    with pytest.raises(ValueError):
        figures.shares(results, ["a"], bucket_seconds=0)


def test_targets_met_and_missed() -> None:
    mode: dict[str, Any] = {
        "alone": {"images_per_second": 20.0},
        "with_singles": {
            "images_per_second": 19.5,
            "singles": {"summary": {"p95_seconds": 1.2}},
        },
        "shares": {"max_deviation": 0.14},
    }
    met = {t.name: t.met for t in figures.evaluate(mode)}
    assert list(met.values()) == [True, True, False]
    # Faster beside the singles is no miss; more than 5 % slower is.
    faster = {**mode, "with_singles": {**mode["with_singles"], "images_per_second": 25.0}}
    assert figures.evaluate(faster)[1].met is True
    slower = {**mode, "with_singles": {**mode["with_singles"], "images_per_second": 18.9}}
    assert figures.evaluate(slower)[1].met is False
    nothing = figures.evaluate({})
    assert [t.met for t in nothing] == [None, None, None]


def test_markdown_names_every_mode_and_target() -> None:
    mode = {
        "alone": {"images_per_second": 20.0, "results": 600, "seconds": 35.0},
        "with_singles": {
            "images_per_second": 18.0,
            "singles": {
                "summary": {"count": 2, "p50_seconds": 1, "p95_seconds": 2, "max_seconds": 2},
                "bulk_backlog_at_notify": [400, 0],
            },
        },
        "shares": {
            "tenants": ["c1", "c2"],
            "buckets": [
                {
                    "start": 60,
                    "end": 70,
                    "results": {"c1": 5, "c2": 5},
                    "shares": {"c1": 0.5, "c2": 0.5},
                }
            ],
            "max_deviation": 0.0,
            "overall": {"c1": 0.5, "c2": 0.5},
        },
    }
    results = {
        "date": "2026-12-07T14:00:00+00:00",
        "machine_headline": "2 cores",
        "arguments": {
            "bulk_images": 600,
            "megapixels": "0.5-2",
            "singles": 2,
            "interval": 10,
            "singles_after": 10,
            "share_tenants": 2,
            "share_images": 600,
            "bucket": 10,
            "skip": 60,
        },
        "modes": {"on": mode, "off": mode},
        "targets": [
            {"name": t.name, "target": t.target, "value": t.value, "met": t.met}
            for t in figures.evaluate(mode)
        ],
    }
    text = figures.markdown(results)
    assert "| on | bulk import alone | 20.0 images/s" in text
    assert "| off | single photo notify -> Succeeded" in text
    assert "1 of them while the import still had work waiting" in text
    assert "MISSED" in text  # 18 vs 20 images/s is 10 % slower
    assert "| 60-70 | 50.0% (5) | 50.0% (5) |" in text


METRICS = """# HELP emulsion_queue_depth Items waiting
# TYPE emulsion_queue_depth gauge
emulsion_queue_depth{lane="bulk",tenant="aaaaaaaaaaaaaaaa"} 400.0
emulsion_queue_depth{lane="bulk",tenant="other"} 25.0
emulsion_queue_depth{lane="interactive",tenant="bbbbbbbbbbbbbbbb"} 1.0
# HELP emulsion_queue_oldest_age_seconds Oldest
# TYPE emulsion_queue_oldest_age_seconds gauge
emulsion_queue_oldest_age_seconds{lane="bulk",tenant="aaaaaaaaaaaaaaaa"} 30.5
emulsion_queue_oldest_age_seconds{lane="bulk",tenant="other"} 12.0
emulsion_queue_oldest_age_seconds{lane="interactive",tenant="bbbbbbbbbbbbbbbb"} 0.2
# HELP emulsion_controller_jobs Jobs
# TYPE emulsion_controller_jobs gauge
emulsion_controller_jobs{phase="Queued"} 3.0
"""


def test_queue_gauges_sum_depth_and_take_the_oldest_age_per_lane() -> None:
    sample = figures.queue_sample(METRICS)
    assert sample == {
        "bulk": {"depth": 425.0, "age": 30.5},
        "interactive": {"depth": 1.0, "age": 0.2},
    }
    assert figures.queue_sample("# nothing here\n") == {}
    later = {"bulk": {"depth": 100.0, "age": 45.0}}
    samples = [(1.0, sample), (3.0, later), (9.0, {"bulk": {"depth": 999.0, "age": 99.0}})]
    assert figures.queue_peaks(samples, 0.0, 5.0) == {
        "bulk": {"depth": 425.0, "age": 45.0},
        "interactive": {"depth": 1.0, "age": 0.2},
    }
    assert figures.queue_peaks(samples, 10.0, 20.0) == {}
