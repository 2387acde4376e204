"""Wrappers of a client (the S3 client, as boto3 takes keyword arguments) that change what
one of its methods does and forward everything else: how a test provokes a race, an outage
or a store's refusal in the middle of real worker code."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class OneOperation:
    """Forwards every attribute of `target`; a call of the method `operation` goes to
    `intercept`, with the real method and the call's keyword arguments."""

    def __init__(self, target: Any, operation: str) -> None:
        self._target = target
        self._operation = operation

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._target, name)
        if name != self._operation:
            return real

        def call(**arguments: Any) -> Any:
            return self.intercept(real, arguments)

        return call

    def intercept(self, real: Callable[..., Any], arguments: dict[str, Any]) -> Any:
        raise NotImplementedError
