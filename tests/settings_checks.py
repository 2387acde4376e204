"""The checks every service's settings share: at start-up, a required variable that is
missing stops the service, named in the message; a service started with settings it
refuses exits failing."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from emulsion_runtime.settings import SettingsError


def assert_missing_is_named(
    monkeypatch: pytest.MonkeyPatch,
    load: Callable[[], Any],
    required: Sequence[str],
    missing: str,
    environment: dict[str, str],
) -> None:
    """With `environment` set and `missing` taken away, `load` stops with an invalid
    configuration that names `missing` and no other of the `required` variables."""
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(missing)
    with pytest.raises(SettingsError) as failure:
        load()
    message = str(failure.value.code)
    assert message.startswith("invalid configuration:")
    assert [name for name in required if name in message] == [missing]


def refused_start(module: str, environment: Mapping[str, str]) -> str:
    """`python -m <module>` with `environment` stops at once, failing; what it said."""
    result = subprocess.run(
        [sys.executable, "-m", module],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    return result.stderr
