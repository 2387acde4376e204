"""Running blocking calls (boto3, the Kubernetes client, file I/O) off the event loop.

The caller's context (the current trace span) is carried into the thread, so botocore
and apiserver calls become children of the span that made them. A process pool gets the
call as it is: a context does not cross into another process.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


async def run_blocking(
    function: Callable[..., T], *args: Any, executor: Executor | None = None, **kwargs: Any
) -> T:
    """`function(*args, **kwargs)` on `executor` (the loop's default thread pool if None)."""
    call = functools.partial(function, *args, **kwargs)
    if not isinstance(executor, ProcessPoolExecutor):
        call = functools.partial(contextvars.copy_context().run, call)
    return await asyncio.get_running_loop().run_in_executor(executor, call)


class Blocking:
    """A bounded pool of threads for blocking calls, with `run_blocking`'s context."""

    def __init__(self, threads: int, name: str) -> None:
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)

    async def run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await run_blocking(function, *args, executor=self.pool, **kwargs)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
