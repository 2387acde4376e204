"""The one error the CLI reports: a single line for people, and an exit code."""

from __future__ import annotations

from typing import Final

EXIT_ITEMS_FAILED: Final = 1
EXIT_ERROR: Final = 2
EXIT_INTERRUPTED: Final = 130


class CliError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class ApiRequestError(CliError):
    """The API answered with its JSON error shape; `code` is what callers branch on."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"the API said {status} {code}: {message}")
        self.status = status
        self.code = code
