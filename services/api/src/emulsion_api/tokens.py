"""The accepted bearer tokens and their scopes, kept up to date while the API runs.

The tokens file (`EMULSION_API_TOKENS_FILE`, a mounted Secret), the scopes file
(`EMULSION_API_TOKEN_SCOPES_FILE`, a mounted ConfigMap) and the limits file
(`EMULSION_API_TOKEN_LIMITS_FILE`, beside the scopes) are read again every
`EMULSION_API_TOKENS_RELOAD_SECONDS`. Reading both small files whole and comparing the
bytes is simpler and surer than watching mtimes or inotify: the kubelet replaces a
mounted Secret by swapping a symlink (no write event on the file, and the new file may
carry an old mtime), and an editor may write in place. A changed configuration is
parsed exactly as at start-up; a malformed one (unparsable scopes, a token without
scopes, no token at all, an unreadable file) is refused with an error log and a metric,
and the last good configuration stays in force: a typo must not lock every client out,
nor make every token an admin.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from pathlib import Path

from prometheus_client import Counter, Gauge

from emulsion_api.limits import LimitTable
from emulsion_api.scopes import Scopes
from emulsion_api.settings import ApiSettings

log = logging.getLogger(__name__)

RELOADS = Counter(
    "emulsion_api_token_reloads",
    "Changed token or scope configurations seen, by outcome (applied, refused)",
    ["outcome"],
)
# 1 while the files on disk are what the API enforces; 0 while a refused change waits to
# be fixed (the previous configuration is in force).
CONFIGURATION_OK = Gauge(
    "emulsion_api_token_configuration_ok",
    "Whether the token and scope files in force are the ones on disk (0: a change was refused)",
)

Table = tuple[tuple[bytes, Scopes], ...]


def _table(settings: ApiSettings) -> Table:
    """Every accepted token with its scopes, the files read now; raises OSError or
    ValueError, as at start-up."""
    scoped = settings.scoped_tokens()
    if not scoped:
        raise ValueError("no bearer token configured (to revoke every token, put in a new one)")
    return tuple((token.encode(), scopes) for token, scopes in scoped)


class Tokens:
    """The tokens in force (`current`), and the loop that re-reads their files."""

    def __init__(self, settings: ApiSettings) -> None:
        self._settings = settings
        self._files = tuple(
            Path(path)
            for path in (
                settings.api_tokens_file,
                settings.api_token_scopes_file,
                settings.api_token_limits_file,
            )
            if path
        )
        self._seen = self._fingerprint()
        # Start-up has already refused a bad configuration (load_api_settings).
        self.current: Table = _table(settings)
        # Each token's limits, by its hex SHA-256 (applied with the tokens, never apart).
        self.limits: LimitTable = settings.token_limits()
        CONFIGURATION_OK.set(1)
        self._task: asyncio.Task[None] | None = None

    def _fingerprint(self) -> str:
        digest = hashlib.sha256()
        for path in self._files:
            try:
                digest.update(path.read_bytes())
            except OSError as error:
                # A file that cannot be read is a state of its own; reloading reports it.
                digest.update(f"unreadable: {error}".encode())
            digest.update(b"\0")
        return digest.hexdigest()

    def check(self) -> bool:
        """Read the files; apply what changed if it is valid. True when a change was applied."""
        seen = self._fingerprint()
        if seen == self._seen:
            return False
        self._seen = seen
        try:
            table = _table(self._settings)
            limits = self._settings.token_limits()
        except (OSError, ValueError) as error:
            RELOADS.labels("refused").inc()
            CONFIGURATION_OK.set(0)
            log.error(
                "the changed token configuration is refused; the previous one stays in "
                "force until the files are fixed: %s",
                error,
                extra={"files": [str(path) for path in self._files]},
            )
            return False
        revoked = len({token for token, _ in self.current} - {token for token, _ in table})
        self.current = table
        self.limits = limits
        RELOADS.labels("applied").inc()
        CONFIGURATION_OK.set(1)
        log.warning(
            "token configuration reloaded",
            extra={"tokens": len(table), "tokens_removed": revoked},
        )
        return True

    def start(self) -> None:
        if self._files and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._settings.api_tokens_reload_seconds)
            try:
                # Two small files on a tmpfs: a read is microseconds, no thread needed.
                self.check()
            except Exception:
                # The loop must outlive anything unexpected, or revocation silently stops.
                log.exception("checking the token files failed")
