"""Blocking calls run off the event loop in the caller's context (its trace span), on the
pool given; a process pool gets the bare call, and the Kubernetes client factory reads
the kubeconfig it is given."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextvars import ContextVar
from pathlib import Path
from typing import TypeVar

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from emulsion_runtime import kube
from emulsion_runtime.blocking import Blocking, run_blocking

T = TypeVar("T")
REQUEST: ContextVar[str] = ContextVar("request", default="none")


def seen_in_thread() -> tuple[str, int, str]:
    return REQUEST.get(), trace.get_current_span().get_span_context().trace_id, _thread()


def _thread() -> str:
    return threading.current_thread().name


def square(value: int) -> int:
    return value * value


async def in_a_span(call: Callable[[], Awaitable[T]]) -> T:
    REQUEST.set("req-1")
    span = NonRecordingSpan(SpanContext(0xABC, 0xDEF, is_remote=False, trace_flags=TraceFlags(1)))
    with trace.use_span(span):
        return await call()


def test_the_callers_context_and_span_reach_the_thread() -> None:
    async def body() -> tuple[tuple[str, int, str], tuple[str, int, str]]:
        pool = Blocking(2, "test-io")
        try:
            on_pool = await in_a_span(lambda: pool.run(seen_in_thread))
            on_default = await in_a_span(lambda: run_blocking(seen_in_thread))
        finally:
            pool.close()
        return on_pool, on_default

    on_pool, on_default = asyncio.run(body())
    assert on_pool[:2] == ("req-1", 0xABC)
    assert on_pool[2].startswith("test-io")
    assert on_default[:2] == ("req-1", 0xABC)


def test_a_given_thread_pool_runs_the_call_with_its_arguments() -> None:
    with ThreadPoolExecutor(1, thread_name_prefix="given") as pool:
        assert asyncio.run(run_blocking(square, 7, executor=pool)) == 49


def test_a_process_pool_gets_the_bare_call() -> None:
    # A context cannot be pickled into another process; the call still runs there.
    with ProcessPoolExecutor(1) as pool:
        assert asyncio.run(run_blocking(square, 9, executor=pool)) == 81


def test_the_kube_client_reads_the_kubeconfig_it_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)  # not in a pod
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:6443'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    client = kube.api_client(str(kubeconfig), connections=7)
    assert client.configuration.host == "https://127.0.0.1:6443"
    assert client.configuration.connection_pool_maxsize == 7
