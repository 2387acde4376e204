"""Children a test will Ctrl-C, started with SIGINT at its default as a terminal starts them.

A script that runs the tests in the background (`make test &`, a CI runner) hands them
SIGINT ignored, every child inherits that, and a Python child then installs no
KeyboardInterrupt handler: the test's SIGINT would never reach it. Every test that sends
a child SIGINT starts it with `preexec_fn=sigint_default`, which sets the child's SIGINT
back to the default between fork and exec (exec keeps a default disposition).
"""

from __future__ import annotations

import signal


def sigint_default() -> None:
    """`preexec_fn` of a child the test will interrupt: SIGINT back to SIG_DFL."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
