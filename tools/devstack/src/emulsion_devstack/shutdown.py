"""Stop the stacks this process owns when it is told to stop (Ctrl-C, SIGTERM, SIGHUP).

The stack's servers run in sessions of their own (so a terminal's Ctrl-C never reaches
them and `make up` can leave them running); the price is that nothing stops them when
the process that started them dies. Python's default SIGTERM ends the process without
running a single `finally`, and a Ctrl-C can be swallowed by code that catches broadly.
So every tool that owns a stack (the pytest fixtures, the benchmarks, `make up` while it
starts) registers it here: the first signal stops every registered stack by the pids in
its state file, then raises KeyboardInterrupt, which ends pytest (with its teardown) and
every script alike. An atexit hook stops what a normal exit left registered.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
from types import FrameType
from typing import Protocol


class Stoppable(Protocol):
    def down(self) -> list[str]: ...


SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_owned: list[Stoppable] = []
_installed_in: int | None = None
_atexit_registered = False
_stopping = False


def own(stack: Stoppable) -> None:
    """Stop `stack` when this process is signalled or exits, until `release`d."""
    if not any(s is stack for s in _owned):
        _owned.append(stack)
    _install()


def release(stack: Stoppable) -> None:
    """`stack` is stopped, or meant to outlive this process (`make up`)."""
    _owned[:] = [s for s in _owned if s is not stack]


def stop_owned() -> None:
    """Stop every owned stack; idempotent, and never re-entered by a second signal."""
    global _stopping
    if _stopping:
        return
    _stopping = True
    try:
        for stack in list(_owned):
            stack.down()
            release(stack)
    finally:
        _stopping = False


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if os.getpid() != _installed_in:
        # A forked child (a multiprocessing worker) inherited the handler; the stack is
        # its parent's to stop. Behave as if the handler were never installed.
        default = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
        signal.signal(signum, default)
        os.kill(os.getpid(), signum)
        return
    if _stopping:
        return
    stop_owned()
    raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")


def _install() -> None:
    global _installed_in, _atexit_registered
    if not _atexit_registered:
        atexit.register(stop_owned)
        _atexit_registered = True
    # Only the main thread may set handlers; atexit still covers a normal exit.
    if _installed_in == os.getpid() or threading.current_thread() is not threading.main_thread():
        return
    for signum in SIGNALS:
        # A signal ignored on purpose (nohup's SIGHUP) stays ignored.
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _on_signal)
    _installed_in = os.getpid()
