"""The arena limit, judged by glibc's own account of its heaps (`malloc_info`)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

# A child process: optionally limit the arenas, then let eight threads hold large
# allocations at once (contending for the heap), and print how many heaps glibc made.
CHILD = textwrap.dedent(
    """
    import ctypes, sys, tempfile, threading
    from emulsion_runtime import allocator

    took = allocator.limit_arenas(1) if sys.argv[1] == "limit" else False
    barrier = threading.Barrier(8)

    def hold() -> None:
        blocks = [bytearray(200_000) for _ in range(20)]
        barrier.wait()
        del blocks

    threads = [threading.Thread(target=hold) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
    libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
    libc.fclose.argtypes = (ctypes.c_void_p,)
    with tempfile.NamedTemporaryFile(suffix=".xml") as report:
        stream = libc.fopen(report.name.encode(), b"w")
        libc.malloc_info(0, stream)
        libc.fclose(stream)
        heaps = open(report.name).read().count("<heap nr=")
    print(took, heaps)
    """
)


def heaps_made(mode: str, **environment: str) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    ran = subprocess.run(
        [sys.executable, "-c", CHILD, mode],
        env={**env, **environment},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    took, heaps = ran.stdout.split()
    return took == "True", int(heaps)


# Integration, not `make unit`: a Python process of its own (see tests/conftest.py).
@pytest.mark.integration
def test_threads_share_one_arena_once_limited() -> None:
    assert heaps_made("limit") == (True, 1)
    _, unlimited = heaps_made("none")
    assert unlimited > 1  # the test can tell: unlimited threads do take arenas of their own


# Integration, not `make unit`: a Python process of its own (see tests/conftest.py).
@pytest.mark.integration
def test_an_operators_malloc_arena_max_wins() -> None:
    assert heaps_made("limit", MALLOC_ARENA_MAX="2")[0] is False
