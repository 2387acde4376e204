"""CPU and memory accounting from /proc: the parsing on fixed text, the meter on real
processes this test starts (CPU seconds are the kernel's, not a wall clock's)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulsion_bench import procstat
from emulsion_bench.procstat import PhaseMeter, Stat, parse_stat, parse_status_kib

# A /proc/<pid>/stat line (Linux 6.x: 52 fields); fields 14-17 are utime, stime, cutime,
# cstime; the command name is in parentheses and may hold anything but a newline.
STAT_LINE = (
    "4242 ({name}) S 17 4242 4242 0 -1 4194560 2520 0 0 0 {utime} {stime} {cutime} {cstime} "
    "20 0 3 0 123456 314572800 30000 18446744073709551615 1 1 0 0 0 0 0 16781312 16386 0 0 0 "
    "17 1 0 0 0 0 0 0 0 0 0 0 0 0 0"
)


@given(
    st.text(alphabet=st.characters(blacklist_characters="\n\x00"), max_size=15),
    st.integers(0, 10**9),
    st.integers(0, 10**9),
    st.integers(0, 10**9),
    st.integers(0, 10**9),
)
def test_stat_fields_are_read_whatever_the_command_name(
    name: str, utime: int, stime: int, cutime: int, cstime: int
) -> None:
    line = STAT_LINE.format(name=name, utime=utime, stime=stime, cutime=cutime, cstime=cstime)
    stat = parse_stat(line)
    assert (stat.ppid, stat.state) == (17, "S")
    assert stat.cpu_ticks == utime + stime + cutime + cstime


def test_status_fields_are_read_in_kib() -> None:
    status = textwrap.dedent(
        """\
        Name:\tminio
        VmPeak:\t 2000000 kB
        VmHWM:\t  316000 kB
        VmRSS:\t  200000 kB
        """
    )
    assert parse_status_kib(status, "VmHWM") == 316000
    assert parse_status_kib(status, "VmRSS") == 200000
    assert parse_status_kib(status, "VmSwap") is None


def _stat(ppid: int, own: int, reaped: int = 0) -> Stat:
    return Stat("S", ppid, utime=own, stime=0, cutime=reaped, cstime=0)


def test_a_tree_counts_live_descendants_and_reaped_children_once() -> None:
    before = {10: _stat(1, 100), 11: _stat(10, 50), 12: _stat(11, 20), 99: _stat(1, 7)}
    # 12 exited and was reaped by 11: its 30 ticks now sit in 11's cutime.
    after = {10: _stat(1, 110), 11: _stat(10, 60, reaped=30), 99: _stat(1, 500)}
    assert procstat.descendants_in(procstat.children_by_parent(before), 10) == [11, 12]
    spent = procstat.tree_cpu_ticks(after, 10) - procstat.tree_cpu_ticks(before, 10)
    assert spent == 10 + 10 + (30 - 20)
    # A descendant metered on its own (a server the bench started) is not counted twice.
    assert procstat.tree_cpu_ticks(after, 10, apart={11}) == 110


def test_cpu_per_item_divides_each_process_and_sums_them() -> None:
    used = {
        "processor": procstat.ProcessUse(cpu_seconds=8.0, peak_rss_mb=200),
        "minio": procstat.ProcessUse(cpu_seconds=2.0, peak_rss_mb=100),
    }
    assert procstat.cpu_per_item(used, 4) == {"processor": 2.0, "minio": 0.5, "total": 2.5}


BURN = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass\n"


# Integration, not `make unit`: measures processes of its own (see tests/conftest.py).
@pytest.mark.integration
def test_the_meter_counts_a_child_that_exited_during_the_phase() -> None:
    # On "go", the parent waits for a child that burns 0.3 s of CPU, burns 0.2 s itself,
    # says "done" and stays alive until told to end.
    script = (
        "import subprocess, sys\n"
        "sys.stdin.readline()\n"
        f"subprocess.run([sys.executable, '-c', {BURN.format(seconds=0.3)!r}], check=True)\n"
        + BURN.format(seconds=0.2)
        + "print('done', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert parent.stdin is not None and parent.stdout is not None
    try:
        meter = PhaseMeter({"parent": parent.pid})
        meter.start()
        parent.stdin.write("go\n")
        parent.stdin.flush()
        assert parent.stdout.readline() == "done\n"
        spent = meter.stop()["parent"]
        # At least the 0.5 s burnt (less a clock tick of accounting), plus start-up costs.
        assert 0.49 <= spent.cpu_seconds < 5.0
        assert spent.peak_rss_mb > 1
    finally:
        parent.communicate("end\n", timeout=30)
