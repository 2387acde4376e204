"""20,000 keys swept within bounded memory: the sweep pages through listings and deletes
in batches instead of holding them, so more keys must not take more memory."""

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
# and its datetime come to over 200 bytes. Bounded memory grows by far less than this.
HELD_KEY_BYTES = 100


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


# Writing 20,000 objects and sweeping them under tracemalloc takes minutes on a small,
# shared machine.
@pytest.mark.timeout(1800)
def test_twenty_thousand_keys_are_swept_within_bounded_memory(
    stack: Endpoints, s3: Any, run: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Both fill every batch the sweep keeps (a listing page, a thousand keys of one reason
    # for one delete call, a thousand assets' manifests re-read for it), so both reach the
    # sweep's ceiling; only the number of keys differs. Originals only keep the manifest
    # reads (the slowest part) to two thousand.
    def bucket() -> str:
        return f"bulk-{uuid.uuid4().hex[:12]}"

    small = populate(stack, bucket(), assets=1000, uploads=1000, leased=100, styles=())
    large = populate(stack, bucket(), assets=1000, uploads=18_000, leased=1000, styles=())

    few = swept(stack, s3, run, small)
    many = swept(stack, s3, run, large)

    assert (few.report.scanned, many.report.scanned) == (3000, 20_000)
    growth = (many.peak_bytes - few.peak_bytes) / (many.report.scanned - few.report.scanned)
    with capsys.disabled():
        print(
            f"\njanitor sweep: {few.report.scanned} keys -> peak {few.peak_mib:.1f} MiB;"
            f" {many.report.scanned} keys -> peak {many.peak_mib:.1f} MiB"
            f" ({growth:+.0f} bytes per extra key) in {many.seconds:.1f} s under tracemalloc"
        )
    assert growth < HELD_KEY_BYTES, "the sweep's memory grows with the number of keys"
