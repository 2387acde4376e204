"""How the CLI cuts a gallery into presign-upload-notify batches, and how its progress bar
takes a total that grows as batches are accepted."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from emulsion_cli.ingest import FIRST_BATCH, PRESIGN_BATCH, batch_sizes
from emulsion_cli.progress import RichReporter


@given(
    total=st.integers(min_value=0, max_value=20_000),
    first=st.integers(min_value=1, max_value=500),
    most=st.integers(min_value=1, max_value=5000),
)
def test_batches_cover_every_file_once_start_small_and_double_up_to_the_largest(
    total: int, first: int, most: int
) -> None:
    sizes = batch_sizes(total, first, most)

    assert sum(sizes) == total
    assert all(0 < size <= most for size in sizes)
    if total:
        assert sizes[0] == min(first, most, total)
    # Each batch (but a short last one) is twice the one before, or the largest.
    for before, after in itertools.pairwise(sizes[:-1]):
        assert after == min(2 * before, most)


def test_a_gallery_starts_processing_after_its_first_small_batch() -> None:
    assert batch_sizes(1361, FIRST_BATCH, PRESIGN_BATCH) == [25, 50, 100, *[200] * 5, 186]
    assert batch_sizes(3, FIRST_BATCH, PRESIGN_BATCH) == [3]


def test_the_processing_bar_is_one_bar_whose_total_follows_the_plan() -> None:
    reporter = RichReporter(Console(force_terminal=False, width=100, quiet=True))
    with reporter:
        reporter.processing_planned(300)
        reporter.processing_planned(298)  # two files' names clashed
        reporter.processed(10)
    [bar] = [task for task in reporter.progress.tasks if task.description == "process"]
    assert (bar.total, bar.completed) == (298, 10)
