"""The whole system as processes: the servers, the four services, and an OTLP receiver.

Started through the same `LocalStack` as `make up`, with `OTEL_*` pointing every
service at the receiver (the services inherit the environment, as under `make up`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from emulsion_devstack.otlp import OtlpReceiver
from emulsion_devstack.stack import LocalStack, s3_client
from tests.systems import endpoints_of, own_system

# Short enough that the janitor's fast path runs within a test, long enough that a
# test still sees the superseded version right after the new one went live.
GC_GRACE_SECONDS = 8
# A profile beside the built-in default (which stays as it is): styles with several
# output formats, as an operator opts in (test_formats.py).
PROFILES = """
- name: formats
  styles:
    - {name: large, width: 800, height: 800, fit: fit, formats: [avif, webp, jpeg]}
    - {name: thumb, width: 100, height: 100, fit: crop, formats: [avif, jpeg]}
    - {name: tiny, width: 50, height: 50, fit: crop}
"""


@pytest.fixture(scope="session")
def otlp() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory, otlp: OtlpReceiver) -> Iterator[LocalStack]:
    profiles = tmp_path_factory.mktemp("profiles") / "profiles.yaml"
    profiles.write_text(PROFILES)
    with own_system(
        tmp_path_factory.mktemp("system"),
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="200",
        EMULSION_GC_GRACE_SECONDS=str(GC_GRACE_SECONDS),
        EMULSION_PROFILES_FILE=str(profiles),
    ) as (stack, _):
        yield stack


@pytest.fixture(scope="session")
def system_s3(system: LocalStack) -> Any:
    return s3_client(endpoints_of(system))
