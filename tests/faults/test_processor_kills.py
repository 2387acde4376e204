"""SIGKILL the processor at each point of an item's life; the stack starts it again.

Each point is reached deterministically: the processor's connections go through proxies
that hold the frame marking the point (the source's bytes, the manifest's PUT, the ack),
or, for the render, the item's scratch directory shows it while the process is frozen.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest

from emulsion_contracts.profiles import DEFAULT_PROFILE
from emulsion_devstack.processes import wait_for
from tests.faults.conftest import FaultStack
from tests.faults.oracle import list_keys, verify
from tests.faults.proxy import Hold
from tests.faults.workload import big_image, gallery, ingest, upload

ITEMS = 12
DEADLINE = 150  # seconds for the whole case, oracle included


def _bucket_path(fault: FaultStack, key: str) -> bytes:
    return re.escape(f"/{fault.client.bucket}/{key}".encode())


def _start_job(fault: FaultStack, tmp_path: Path, collection: str, seed: int) -> tuple[str, str]:
    """A job whose first item is a big photo; returns (job, the big photo's staging key)."""
    photos = [big_image(tmp_path / "big.jpg"), *gallery(tmp_path / "g", ITEMS - 1, seed)]
    staged = upload(fault.client, collection, photos)
    return ingest(fault.client, collection, staged)[0], staged[0]


def _kill_and_restart(fault: FaultStack) -> None:
    fault.stack.kill("processor", signal.SIGKILL)
    fault.start("processor")


@pytest.mark.timeout(DEADLINE + 30)
def test_killed_mid_download(fault: FaultStack, tmp_path: Path) -> None:
    case = fault.case().watching("kill-download")
    big = big_image(tmp_path / "big.jpg")
    # The source's answer is cut after 256 KiB: the processor is provably inside download.
    hold = fault.proxy("processor", "s3").arm(
        Hold(
            rb"GET " + _bucket_path(fault, "staging/") + rb"[^ ]*big\.jpg",
            then="down",
            pass_bytes=256 * 1024,
        )
    )
    job, staged = _start_job(fault, tmp_path, "kill-download", seed=11)
    case.jobs.append(job)
    hold.wait(60)
    partial = wait_for(
        "a partly downloaded source in the processor's scratch dir",
        lambda: [
            p
            for p in fault.scratch.glob("proc-*/item-*/source")
            if 0 < p.stat().st_size < big.stat().st_size
        ],
        timeout=30,
    )
    assert partial and staged.endswith("big.jpg")
    _kill_and_restart(fault)
    verify(case, timeout=DEADLINE, all_succeed=True)


@pytest.mark.timeout(DEADLINE + 30)
def test_killed_mid_render(fault: FaultStack, tmp_path: Path) -> None:
    case = fault.case().watching("kill-render")
    s3_proxy = fault.proxy("processor", "s3")
    s3_proxy.log_requests(rb"PUT /[^ ]*/derivatives/kill-render/")
    began = time.monotonic()
    big = big_image(tmp_path / "big.jpg")
    job, _ = _start_job(fault, tmp_path, "kill-render", seed=12)
    case.jobs.append(job)

    def rendering_the_big_one() -> bool:
        for out in fault.scratch.glob("proc-*/item-*/out"):
            source = out.parent / "source"
            if source.exists() and source.stat().st_size == big.stat().st_size:
                return True
        return False

    wait_for("the big photo's render under way", rendering_the_big_one, timeout=60)
    fault.stack.kill("processor", signal.SIGSTOP)
    # Frozen mid-render: its output directory exists and none of its styles went up.
    assert rendering_the_big_one()
    assert not [line for line in s3_proxy.logged(began) if b"big.jpg" in line]
    _kill_and_restart(fault)
    verify(case, timeout=DEADLINE, all_succeed=True)


@pytest.mark.timeout(DEADLINE + 30)
def test_killed_between_upload_and_commit(fault: FaultStack, tmp_path: Path) -> None:
    case = fault.case().watching("kill-commit")
    # The first manifest write never reaches S3: every style of that item is uploaded.
    hold = fault.proxy("processor", "s3").arm(
        Hold(rb"PUT " + _bucket_path(fault, "assets/kill-commit/"))
    )
    job, _ = _start_job(fault, tmp_path, "kill-commit", seed=13)
    case.jobs.append(job)
    hold.wait(90)
    # The held item: its styles are all in S3, its manifest is not.
    line = hold.seen[0].split(b" ", 2)[1].decode()
    manifest_key = line.split(f"/{fault.client.bucket}/", 1)[1].split("?")[0]
    asset = manifest_key.removeprefix("assets/kill-commit/").removesuffix(".json")
    assert not list_keys(fault.client, manifest_key)
    uploaded = list_keys(fault.client, f"derivatives/kill-commit/{asset}/")
    assert len(uploaded) == len(DEFAULT_PROFILE.styles), uploaded
    _kill_and_restart(fault)
    verify(case, timeout=DEADLINE, all_succeed=True)


@pytest.mark.timeout(DEADLINE + 30)
def test_killed_between_commit_and_ack(fault: FaultStack, tmp_path: Path) -> None:
    case = fault.case().watching("kill-ack")
    # The first ack stays in the proxy: that item is committed and its result published.
    # (nats-py acks with an empty body to the message's $JS.ACK subject: `ack` with an
    # empty reply field, so two spaces; `ack_sync` makes it a request, with a reply inbox.)
    hold = fault.proxy("processor", "nats").arm(Hold(rb"PUB \$JS\.ACK\.\S+ +(?:_INBOX\S+ )?0\r\n"))
    job, _ = _start_job(fault, tmp_path, "kill-ack", seed=14)
    case.jobs.append(job)
    hold.wait(90)
    assert list_keys(fault.client, "assets/kill-ack/"), "the unacknowledged item is committed"
    _kill_and_restart(fault)
    verify(case, timeout=DEADLINE, all_succeed=True)
