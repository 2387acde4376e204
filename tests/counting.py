"""Call counting for the tests that check the capacity model's counted requests
(docs/capacity.md): a proxy that forwards everything and counts the methods it is told."""

from __future__ import annotations

from collections import Counter
from typing import Any

# botocore's method names, by the class docs/capacity.md counts them in.
S3_CLASS = {
    "get_object": "GET",
    "put_object": "PUT",
    "copy_object": "COPY",
    "head_object": "HEAD",
    "list_objects_v2": "LIST",
    "delete_objects": "DELETE",
    "delete_object": "DELETE",
}


class Counting:
    """Forwards every attribute of `target`, counting the calls of the methods named."""

    def __init__(self, target: Any, names: dict[str, str], counts: Counter[str]) -> None:
        self._target = target
        self._names = names
        self._counts = counts

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._target, name)
        if name not in self._names:
            return real

        def call(*positional: Any, **arguments: Any) -> Any:
            self._counts[self._names[name]] += 1
            return real(*positional, **arguments)

        return call
