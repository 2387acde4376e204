"""The one error the CLI reports: a single line for people, and an exit code.

The exit codes, for scripts (also in `emulsion --help` and the README):

    0    everything asked for was done
    1    the command ran, but some items failed (an ingest, `status --watch`)
    2    usage: bad arguments, a bad or missing configuration
    3    the API (or the object store) answered with an error; its `code` is printed
    4    the API could not be reached (after retries)
    5    the ingest expired: it finished and its TTL removed it; what is still known
         (its summary, the assets it made) is printed
    130  interrupted by Ctrl-C (SIGINT); 143 stopped by SIGTERM
"""

from __future__ import annotations

from typing import Any, Final

EXIT_OK: Final = 0
EXIT_ITEMS_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_API: Final = 3
EXIT_UNREACHABLE: Final = 4
EXIT_EXPIRED: Final = 5
EXIT_INTERRUPTED: Final = 130
EXIT_TERMINATED: Final = 143

EXIT_CODES_HELP: Final = """exit codes:
  0    everything asked for was done
  1    some items failed (ingest, status --watch)
  2    usage error: bad arguments or configuration
  3    the API or the object store answered with an error
  4    the API could not be reached (after retries)
  5    the ingest expired (its summary and the assets it made are printed)
  130  interrupted (Ctrl-C); 143 stopped by SIGTERM"""


class CliError(Exception):
    """Something the API or the run itself went wrong with (exit 3 unless told)."""

    def __init__(self, message: str, exit_code: int = EXIT_API) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class UsageError(CliError):
    """The user's arguments or configuration: nothing was sent."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


class Unreachable(CliError):
    """No answer at all: a refused connection, a timeout, a broken stream."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_UNREACHABLE)


class ApiRequestError(CliError):
    """The API answered with its JSON error shape; `code` is what callers branch on.
    `retry_after` is the server's Retry-After in seconds, when it sent one."""

    def __init__(
        self, status: int, code: str, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(f"the API said {status} {code}: {message}")
        self.status = status
        self.code = code
        self.retry_after = retry_after


class Stopped(BaseException):
    """SIGTERM arrived: the run was cancelled (a BaseException, like KeyboardInterrupt,
    so no `except Exception` swallows it)."""


class IngestExpired(ApiRequestError):
    """410 `ingest_expired`: the job finished and its TTL removed it from the cluster;
    `ingest` is what the API still knows (summary, a page of the assets it made)."""

    def __init__(self, message: str, ingest: dict[str, Any]) -> None:
        super().__init__(410, "ingest_expired", message)
        self.exit_code = EXIT_EXPIRED
        self.ingest = ingest
