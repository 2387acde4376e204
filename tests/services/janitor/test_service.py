"""The janitor as the process `make up` and the chart run: settings, health, metrics, the
fast path end to end, `--sweep-once`/`--dry-run`, and SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from emulsion_contracts import keys
from emulsion_devstack.processes import ProcessRecord, stop, wait_for
from emulsion_devstack.stack import Endpoints, LocalStack
from emulsion_janitor.store import PassProgress, write_progress
from emulsion_runtime import messaging
from tests.settings_checks import refused_start

from .conftest import Layout, connected, until

CONSOLE_SCRIPT = Path(sys.executable).parent / "emulsion-janitor"

# The collection the uploads in these tests were presigned for.
STAGING_COLLECTION = "janitor-uploads"


@pytest.fixture(scope="session")
def local_stack(stack: Endpoints, stack_state_dir: Path) -> LocalStack:
    # The session stack's own state directory, so its `down` also stops what starts here.
    return LocalStack(stack_state_dir, say=lambda line: None)


@contextmanager
def running_janitor(
    local_stack: LocalStack, layout: Layout, **environment: str
) -> Iterator[tuple[ProcessRecord, str]]:
    # A full pass just finished: the next is a day away, so only the fast path deletes
    # here (a first start would otherwise begin a pass at once, racing the fast path).
    now = datetime.now(UTC)
    write_progress(layout.s3, layout.bucket, PassProgress(started_at=now, finished_at=now))
    bucket = layout.bucket
    record = local_stack.start_service(
        "janitor",
        {
            "EMULSION_BUCKET": bucket,
            "EMULSION_GC_GRACE_SECONDS": "0",
            # Only the fast path here; the sweep has tests of its own.
            "EMULSION_JANITOR_SWEEP_SECONDS": "86400",
            **environment,
        },
    )
    try:
        yield record, LocalStack.service_url(record)
    finally:
        stop(record)


def scrape(url: str, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:  # noqa: S310
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            total += float(match.group(2))
    return total


def exit_status(record: ProcessRecord) -> int:
    # The stack spawned it from this process, so it is our child to wait for.
    _, status = os.waitpid(record.pid, 0)
    return os.waitstatus_to_exitcode(status)


# No age rule holds a key back: whatever is unneeded goes at once.
NO_WAITING = {
    "EMULSION_GC_GRACE_SECONDS": "0",
    "EMULSION_UPLOAD_TTL_SECONDS": "0",
    "EMULSION_JANITOR_ORPHAN_SECONDS": "0",
}


def environment(stack: Endpoints, **overrides: str) -> dict[str, str]:
    # As the janitor's own NATS identity, not the stack's admin: what it may do is enough.
    return {
        **os.environ,
        **stack.environment(),
        **stack.nats_environment("janitor"),
        "OTEL_SDK_DISABLED": "true",
        **overrides,
    }


@pytest.mark.usefixtures("empty_gc_queue")
def test_the_process_carries_out_gc_requests_and_exits_cleanly_on_sigterm(
    stack: Endpoints, local_stack: LocalStack, layout: Layout, collection: str, run: Any
) -> None:
    old, new = layout.reingested(collection, "IMG_0201.jpg")

    async def publish_and_wait() -> None:
        async with connected(stack) as bus:
            await bus.publish("superseded", [*old.keys, *new.keys])
            await until("the request to be acknowledged", bus.settled)

    with running_janitor(local_stack, layout) as (record, url):
        with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:  # noqa: S310
            assert response.status == 200
        run(publish_and_wait())
        assert layout.present([*old.keys, *new.keys]) == set(new.keys)
        deleted = scrape(url, "emulsion_janitor_deleted_keys_total", reason="superseded")
        assert deleted == len(old.keys)
        assert scrape(url, "emulsion_janitor_refusals_total", guard="live") == len(new.keys)
        assert scrape(url, "emulsion_janitor_freed_bytes_total") == 100 * len(old.keys)

        os.killpg(record.pid, signal.SIGTERM)
        assert exit_status(record) == 0
    assert '"janitor stopped"' in Path(record.log).read_text()


def test_sweep_once_with_dry_run_reports_and_then_a_real_sweep_deletes(
    stack: Endpoints, layout: Layout, collection: str
) -> None:
    doomed = [
        *layout.version(collection, "IMG_0202.jpg").keys,  # an asset without a manifest
        layout.put(keys.staging_key(STAGING_COLLECTION, keys.new_ulid(), "IMG_0203.jpg")),
    ]
    env = environment(stack, EMULSION_BUCKET=layout.bucket, **NO_WAITING)

    dry = subprocess.run(
        [str(CONSOLE_SCRIPT), "--sweep-once", "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    dry_summary = json.loads(dry.stdout)
    assert (dry_summary["deleted"], dry_summary["refused"]) == (0, {"dry_run": len(doomed)})
    assert layout.present(doomed) == set(doomed)

    real = subprocess.run(
        [sys.executable, "-m", "emulsion_janitor", "--sweep-once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(real.stdout)["deleted"] == len(doomed)
    assert layout.present(doomed) == set()


# Integration, not `make unit`: starts the janitor as a process per setting (see tests/conftest.py).
@pytest.mark.integration
def test_missing_settings_stop_the_process_naming_each_variable() -> None:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("NATS_URL", "EMULSION_BUCKET")
    }
    env["EMULSION_JANITOR_SWEEP_SECONDS"] = "0"

    stderr = refused_start("emulsion_janitor", env)
    for variable in ("NATS_URL", "EMULSION_BUCKET", "EMULSION_JANITOR_SWEEP_SECONDS"):
        assert variable in stderr


@pytest.mark.usefixtures("empty_gc_queue")
def test_a_dry_run_janitor_leaves_gc_requests_for_one_that_deletes(
    stack: Endpoints, local_stack: LocalStack, layout: Layout, collection: str, run: Any
) -> None:
    old = layout.version(collection, "IMG_0204.jpg")
    layout.commit(layout.version(collection, "IMG_0204.jpg"))

    async def publish() -> None:
        async with connected(stack) as bus:
            await bus.publish("superseded", old.keys)

    async def backlog() -> tuple[int, int]:
        async with connected(stack) as bus:
            waiting: tuple[int, int] = await bus.gc_backlog()
            return waiting

    async def settled() -> None:
        async with connected(stack) as bus:
            await until("the request to be acknowledged", bus.settled)

    dry_run = {"EMULSION_JANITOR_DRY_RUN": "true"}
    with running_janitor(local_stack, layout, **dry_run) as (_, url):
        run(publish())
        assert run(backlog()) == (1, 0)
        assert scrape(url, "emulsion_janitor_gc_messages_total") == 0
    # Had the dry run taken the request, it would be gone and this janitor would idle.
    assert layout.present(old.keys) == set(old.keys)

    with running_janitor(local_stack, layout):
        run(settled())
    assert layout.present(old.keys) == set()


def test_two_janitors_consume_alike_but_one_at_a_time_sweeps(
    local_stack: LocalStack, layout: Layout
) -> None:
    """The chart lets the janitor scale to two: both take GC requests, only the holder of
    the sweeper role (emulsion_runtime.singleton) sweeps; stopped, it hands over."""
    with running_janitor(local_stack, layout) as (first, first_url):
        wait_for("a sweeper", lambda: scrape(first_url, "emulsion_janitor_sweeper") == 1, 30)
        with running_janitor(local_stack, layout) as (_, second_url):
            wait_for("the second janitor ready", lambda: _ready(second_url), 30)
            assert scrape(second_url, "emulsion_janitor_sweeper") == 0
            os.killpg(first.pid, signal.SIGTERM)
            assert exit_status(first) == 0
            # It gave the role up on the way out: taken at the next try, not after the TTL.
            renew = messaging.SINGLETON_TTL / 3
            wait_for(
                "the second janitor sweeping",
                lambda: scrape(second_url, "emulsion_janitor_sweeper") == 1,
                renew + 10,
            )


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:  # noqa: S310
            return bool(response.status == 200)
    except OSError:
        return False
