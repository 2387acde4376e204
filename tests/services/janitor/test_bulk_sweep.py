"""More keys swept within the same memory: the sweep pages through listings and deletes in
batches instead of holding them, so more keys must not take more memory.

Four times the keys tells a held listing (over 200 bytes a key) from none; the
full pass's keys/s over 20,000 and 200,000 photos are `make bench-janitor`'s
(emulsion_bench.janitor)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from emulsion_bench.janitor_bulk import (
    Measurement,
    Population,
    count,
    measured_sweep,
    populate,
    release,
    settings_for,
)
from emulsion_devstack.stack import Endpoints

# What each listed key would cost if the sweep held the listing: a StoredObject, its key
# and its datetime come to 243 bytes (tracemalloc, 3,000 staging keys). The line sits just
# under that. The sweep's peak jitters by up to ~800 KB between runs, depending on which
# listing page and delete batch overlap and how slowly a loaded store answers (-73, +95,
# +107 bytes a key measured over 3,000 extra keys on a quiet machine, +267 once under CI's
# load); over 9,000 extra keys that jitter stays under ~90 bytes a key, so the line
# catches a held listing without failing bounded sweeps at random.
HELD_KEY_BYTES = 200


def swept(stack: Endpoints, s3: Any, run: Any, population: Population) -> Measurement:
    try:
        measurement: Measurement = run(
            measured_sweep(stack, s3, settings_for(stack, population.bucket))
        )
    finally:
        release(stack, population)
    report = measurement.report
    assert (report.deletion.deleted, report.deletion.failed) == (population.doomed, 0)
    assert not (report.capped or report.interrupted)
    assert count(s3, population.bucket) == population.kept
    return measurement


def test_four_times_the_keys_are_swept_within_the_same_memory(
    stack: Endpoints, s3: Any, run: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Both fill every batch the sweep keeps (a listing page, a thousand keys of one reason
    # for one delete call, a thousand assets' manifests re-read for it), so both reach the
    # sweep's ceiling; only the number of keys differs. Originals only keep the manifest
    # reads (the slowest part) to two thousand.
    def bucket() -> str:
        return f"bulk-{uuid.uuid4().hex[:12]}"

    warm_up = populate(stack, bucket(), assets=20, uploads=20, leased=2, styles=())
    small = populate(stack, bucket(), assets=1000, uploads=1000, leased=100, styles=())
    large = populate(stack, bucket(), assets=1000, uploads=10000, leased=1000, styles=())
    # What the first sweep of the process allocates once (clients' models, pools) would
    # otherwise count against the smaller sweep, hiding up to half a MiB of growth.
    swept(stack, s3, run, warm_up)

    few = swept(stack, s3, run, small)
    many = swept(stack, s3, run, large)

    assert (few.report.scanned, many.report.scanned) == (3000, 12000)
    growth = (many.peak_bytes - few.peak_bytes) / (many.report.scanned - few.report.scanned)
    with capsys.disabled():
        print(
            f"\njanitor sweep: {few.report.scanned} keys -> peak {few.peak_mib:.1f} MiB;"
            f" {many.report.scanned} keys -> peak {many.peak_mib:.1f} MiB"
            f" ({growth:+.0f} bytes per extra key) in {many.seconds:.1f} s under tracemalloc"
        )
    assert growth < HELD_KEY_BYTES, "the sweep's memory grows with the number of keys"
