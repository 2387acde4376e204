"""Decode memory is bounded: concurrent renders are admitted by their decoded size.

The integration case runs a real processor inside a cgroup v1 memory cgroup capped at
2 GiB (the chart's limit), so the kernel's OOM killer, not an estimate, is the judge.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import io
import os
import signal
import struct
import sys
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from pydantic import ValidationError

from emulsion_contracts.messages import StyleSpec
from emulsion_contracts.profiles import DEFAULT_PROFILE
from emulsion_contracts.reasons import FailureReason
from emulsion_devstack.processes import (
    ProcessRecord,
    free_port,
    log_tail,
    spawn,
    stop,
    until,
    wait_until,
)
from emulsion_devstack.services import SERVICES
from emulsion_devstack.stack import Endpoints
from emulsion_processor import admission, imaging
from emulsion_processor.admission import MIB, MemoryBudget
from emulsion_processor.errors import ItemRejected

from .conftest import Bus, metric, settings_for, stage, wait_for, work_item

GIB = 1024 * MIB
CGROUP_V1_MEMORY = Path("/sys/fs/cgroup/memory")


# -- the limit and the estimate ----------------------------------------------------------------


def test_the_pixel_limit_is_pillows_and_cannot_be_set_above_it(tmp_path: Path) -> None:
    assert Image.MAX_IMAGE_PIXELS is not None
    assert imaging.PILLOW_MAX_PIXELS == Image.MAX_IMAGE_PIXELS
    key = tmp_path / "work-signing.key"
    key.write_text("k" * 32)
    fields: dict[str, Any] = {
        f.name: "x" for f in dataclasses.fields(Endpoints) if f.default is dataclasses.MISSING
    }
    stack = Endpoints(**{**fields, "work_signing_key_file": str(key)})
    assert settings_for(stack, tmp_path).max_pixels == Image.MAX_IMAGE_PIXELS
    with pytest.raises(ValidationError):
        settings_for(stack, tmp_path, max_pixels=Image.MAX_IMAGE_PIXELS + 1)


def png_header(width: int, height: int, colour_type: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0"))


def cost(
    tmp_path: Path, data: bytes, styles: tuple[StyleSpec, ...] = DEFAULT_PROFILE.styles
) -> int:
    source = tmp_path / "source"
    source.write_bytes(data)
    return imaging.decode_cost(imaging.RenderJob(source=source, out_dir=tmp_path, styles=styles))


def test_the_cost_is_known_from_the_header_by_mode_and_size(tmp_path: Path) -> None:
    rgba = cost(tmp_path, png_header(9400, 9400, 6))
    grey = cost(tmp_path, png_header(9400, 9400, 0))
    assert 9400 * 9400 * 4 * imaging.PEAK_OVER_DECODED <= rgba < 1.3 * GIB
    assert grey < rgba / 3  # one byte per pixel, not four


def test_a_jpeg_costs_what_its_reduced_decode_takes(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (4000, 4000)).save(buffer, "JPEG")
    small_styles = (StyleSpec(name="s", width=400, height=400),)
    full = cost(tmp_path, buffer.getvalue(), (StyleSpec(name="s", width=4000, height=4000),))
    assert cost(tmp_path, buffer.getvalue(), small_styles) < full / 16


def test_a_bad_file_fails_before_it_waits_for_memory(tmp_path: Path) -> None:
    with pytest.raises(ItemRejected) as rejected:
        cost(tmp_path, b"not an image")
    assert rejected.value.reason is FailureReason.NOT_AN_IMAGE


# -- admission ---------------------------------------------------------------------------


def test_an_image_bigger_than_the_whole_budget_fails_at_once() -> None:
    async def body() -> None:
        budget = MemoryBudget(100)
        with pytest.raises(ItemRejected) as rejected:
            async with budget.admit(101):
                pass
        assert rejected.value.reason is FailureReason.TOO_LARGE_FOR_MEMORY
        assert budget.used == 0

    asyncio.run(body())


def test_renders_wait_for_room_in_order_and_a_cancelled_wait_frees_its_place() -> None:
    async def body() -> None:
        budget = MemoryBudget(100)
        order: list[str] = []
        release_first = asyncio.Event()

        async def hold(name: str, amount: int, until: asyncio.Event | None = None) -> None:
            async with budget.admit(amount):
                order.append(name)
                assert budget.used <= budget.total
                if until is not None:
                    await until.wait()

        first = asyncio.create_task(hold("first", 70, release_first))
        await asyncio.sleep(0)
        big = asyncio.create_task(hold("big", 60))
        small = asyncio.create_task(hold("small", 10))  # would fit, but queues behind big
        cancelled = asyncio.create_task(hold("cancelled", 90))
        await asyncio.sleep(0)
        assert order == ["first"]
        cancelled.cancel()
        release_first.set()
        await asyncio.gather(first, big, small, return_exceptions=True)
        assert order == ["first", "big", "small"]
        assert budget.used == 0

    asyncio.run(body())


def test_the_default_budget_is_the_cgroup_limit_less_a_reserve(tmp_path: Path) -> None:
    limit = admission.cgroup_memory_limit()
    if limit is not None:
        assert admission.default_budget() == max(
            admission.MINIMUM_BUDGET, limit - admission.RESERVED_BYTES
        )
    else:
        assert admission.default_budget() > admission.MINIMUM_BUDGET


# -- two 9,400² RGBA PNGs under a 2 GiB cgroup ----------------------------------------------------


@pytest.fixture
def memory_cgroup() -> Iterator[Path]:
    group = CGROUP_V1_MEMORY / f"emulsion-test-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    try:
        (group / "memory.limit_in_bytes").write_text(str(2 * GIB))
        yield group
    finally:
        for pid in (group / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        # A killed process leaves the group a moment after it is reaped.
        wait_for("the memory cgroup to be empty", lambda: _removed(group), timeout=30)


def _removed(group: Path) -> bool:
    try:
        group.rmdir()
    except OSError as error:
        if error.errno == errno.EBUSY:
            return False
        raise
    return True


def processor_in(group: Path, stack: Endpoints) -> ProcessRecord:
    """A processor that starts inside `group`, so its budget derives from the group's limit."""
    port = free_port()
    data_dir = Path(stack.data_dir)
    enter_and_run = 'echo $$ > "$0/cgroup.procs" && exec "$@"'
    record = spawn(
        "processor",
        ["sh", "-c", enter_and_run, str(group), sys.executable, "-m", "emulsion_processor"],
        data_dir / "logs" / "processor-cgroup.log",
        env={
            **stack.environment(),
            **SERVICES["processor"].environment(stack, data_dir),
            "EMULSION_HTTP_PORT": str(port),
            "OTEL_SERVICE_NAME": "emulsion-processor",
        },
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(record, lambda: metric(url, "emulsion_processor_in_flight") == 0, 60)
    return record


def test_two_huge_rgba_pngs_at_once_under_2_gib_are_processed_not_killed(
    stack: Endpoints, s3: Any, with_bus: Any, memory_cgroup: Path
) -> None:
    buffer = io.BytesIO()
    Image.new("RGBA", (9400, 9400), (30, 90, 200, 128)).save(buffer, "PNG", compress_level=1)
    items = [work_item(stage(s3, stack.bucket, buffer.getvalue(), f"big{i}.png")) for i in (1, 2)]
    record = processor_in(memory_cgroup, stack)
    try:

        async def both(bus: Bus) -> list[Any]:
            for item in items:
                await bus.publish_work(item)

            async def both_results() -> list[Any] | None:
                # Failing at once if the processor is gone (the OOM killer's work).
                assert record.alive(), f"the processor died:\n{log_tail(record.log)}"
                found = [await bus.results(item) for item in items]
                return [results[0] for results in found] if all(found) else None

            results: list[Any] = await until("both results", both_results, 240)
            return results

        results = with_bus(both)
        assert record.alive(), log_tail(record.log)
    finally:
        stop(record)
    oom = (memory_cgroup / "memory.oom_control").read_text()
    assert "oom_kill 0" in oom or "oom_kill " not in oom, oom
    assert int((memory_cgroup / "memory.max_usage_in_bytes").read_text()) <= 2 * GIB
    assert [(r.outcome, r.reason) for r in results] == [("succeeded", None)] * 2
