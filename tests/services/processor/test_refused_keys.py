"""A store that refuses a key fails the item at once (InvalidKey, with the store's code);
it is never waited out as an outage, which kept such items Queued for ever.

On the real MinIO: its refusal of a key is provoked by stretching the key the worker
writes past MinIO's 255-byte segment limit, which no key the layout builds reaches.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest
from botocore.exceptions import ClientError

from emulsion_contracts.messages import ItemResult
from emulsion_contracts.profiles import DEFAULT_PROFILE
from emulsion_devstack.stack import Endpoints

from .conftest import Bus, in_process_worker, jpeg, object_keys, stage, work_item

# The worker would retry an outage after this long: a refusal taken for one would either
# be retried (counted below) or outlast the test.
PATIENT = {"retry_delay_seconds": 30.0, "outage_budget_seconds": 3600.0}


class StretchingKeys:
    """Wraps the S3 client so `operation` on a key under `prefix` names a key whose
    asset segment is `extra` bytes longer; counts the calls it stretched."""

    def __init__(self, s3: Any, operation: str, prefix: str, extra: int) -> None:
        self._s3 = s3
        self._operation = operation
        self._prefix = prefix
        self._extra = extra
        self.stretched = 0

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._s3, name)
        if name != self._operation:
            return real

        def call(**arguments: Any) -> Any:
            key = str(arguments.get("Key", ""))
            if key.startswith(self._prefix):
                area, collection, segment, rest = key.split("/", 3)
                arguments["Key"] = f"{area}/{collection}/{segment}{'x' * self._extra}/{rest}"
                self.stretched += 1
            return real(**arguments)

        return call


class Refusing:
    """Wraps the S3 client so `operation` answers with the store's error `error`."""

    def __init__(self, s3: Any, operation: str, error: dict[str, str]) -> None:
        self._s3 = s3
        self._operation = operation
        self._error = error
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._s3, name)
        if name != self._operation:
            return real

        def call(**arguments: Any) -> Any:
            self.calls += 1
            raise ClientError(cast(Any, {"Error": self._error}), self._operation)

        return call


def test_minio_refusing_a_key_fails_the_item_at_once_with_the_stores_code(
    stack: Endpoints, s3: Any, with_bus: Any, tmp_path: Path
) -> None:
    item = work_item(stage(s3, stack.bucket, jpeg(100, 100)))
    # The original's segment becomes 300 bytes: MinIO refuses a segment over 255.
    stretching = StretchingKeys(s3, "copy_object", "originals/", 300 - len(item.asset))

    async def body(bus: Bus) -> Any:
        with in_process_worker(stack, stretching, bus, tmp_path, **PATIENT) as worker:
            return await worker.result_or_give_back(item, 1)

    result = with_bus(body)
    assert isinstance(result, ItemResult)  # not a GiveBack: no delivery is spent on it
    assert (result.outcome, result.reason, result.attempts) == ("failed", "InvalidKey", 1)
    assert "XMinioInvalidObjectName" in (result.message or "")
    assert stretching.stretched == 1  # refused once, never retried
    assert object_keys(s3, stack.bucket, f"assets/{item.collection}/") == []


@pytest.mark.parametrize(
    "error",
    [
        {"Code": "KeyTooLongError", "Message": "Your key is too long"},
        {"Code": "XMinioInvalidObjectName", "Message": "Object name contains unsupported chars"},
        {"Code": "InvalidArgument", "Message": "Invalid key", "ArgumentName": "key"},
    ],
    ids=["s3-key-too-long", "minio-invalid-name", "invalid-argument-key"],
)
@pytest.mark.parametrize("operation", ["get_object", "copy_object", "put_object"])
def test_any_refused_key_fails_the_item_at_once(
    stack: Endpoints,
    s3: Any,
    with_bus: Any,
    tmp_path: Path,
    error: dict[str, str],
    operation: str,
) -> None:
    item = work_item(stage(s3, stack.bucket, jpeg(100, 100)))
    refusing = Refusing(s3, operation, error)

    async def body(bus: Bus) -> tuple[Any, set[asyncio.Task[Any]]]:
        with in_process_worker(stack, refusing, bus, tmp_path, **PATIENT) as worker:
            before = asyncio.all_tasks()
            result = await worker.result_or_give_back(item, 1)
            # Nothing of the item is left running (say, a sibling upload still retrying).
            return result, {task for task in asyncio.all_tasks() - before if not task.done()}

    result, left_running = with_bus(body)
    assert isinstance(result, ItemResult)
    assert (result.outcome, result.reason) == ("failed", "InvalidKey")
    assert error["Code"] in (result.message or "")
    assert left_running == set()
    # Refused once per key at most (the derivatives are put side by side), never retried.
    styles = len(DEFAULT_PROFILE.styles) if operation == "put_object" else 1
    assert 1 <= refusing.calls <= styles
