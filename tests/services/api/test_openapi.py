"""Property-based run of the API against its own OpenAPI document (schemathesis).

Every operation gets generated valid and invalid requests, with the token; the run fails
on any 5xx, and on a response that breaks the document: undeclared status codes, bodies
or headers that do not match their schema, invalid input that is accepted.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulsion_devstack.stack import Endpoints, LocalStack

from .conftest import ApiProcess, metrics_url_of, wait_for

# Schema-valid requests the API refuses on purpose, because validity depends on data
# the document cannot know: whether an upload exists, the configured limits, and
# whether an asset appears twice in one request.
EXCLUDED_CHECKS = "positive_data_acceptance"
# The event stream lasts as long as the job it follows, and the list of ingests hands the
# fuzzer real (pending) jobs: a request/response fuzzer would wait out its timeout on
# each. The stream has its own tests (routes/test_ingests.py) and its events' types are
# checked in the document (test_errors.py).
EXCLUDED_OPERATIONS = "followIngest"


@pytest.fixture
def short_wait_api(stack: Endpoints, stack_state_dir: Path) -> Iterator[ApiProcess]:
    """An API whose long polls end within a second: the fuzzer long-polls real jobs."""
    record = LocalStack(stack_state_dir, say=lambda line: None).start_service(
        "api", {"EMULSION_MAX_WAIT_SECONDS": "1"}
    )
    try:
        yield ApiProcess(
            LocalStack.service_url(record), stack.api_token, record, metrics_url_of(record)
        )
    finally:
        os.killpg(record.pid, signal.SIGTERM)
        wait_for("the API to exit", lambda: not record.alive(), timeout=30)


def test_no_5xx_and_responses_match_the_openapi_document(
    short_wait_api: ApiProcess, tmp_path: Path
) -> None:
    api_process = short_wait_api
    schemathesis = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert schemathesis is not None
    result = subprocess.run(
        [
            schemathesis,
            "run",
            f"{api_process.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {api_process.token}",
            "--checks",
            "all",
            "--exclude-checks",
            EXCLUDED_CHECKS,
            "--exclude-operation-id",
            EXCLUDED_OPERATIONS,
            "--phases",
            "examples,coverage,fuzzing",
            # Enough to cover every operation's constraints; the machine is shared, and a
            # run cut short by a time budget reports the cut as an error.
            "--max-examples",
            "12",
            "--seed",
            "20261123",
            # One worker: with several, hypothesis describes filter lambdas by parsing
            # source on many threads at once, which CPython 3.11's ast module cannot take
            # ("AST constructor recursion depth mismatch", a run error unrelated to the API).
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )

    # The report names each failing operation and how to reproduce it.
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-2000:]
    assert "Server error" not in result.stdout
