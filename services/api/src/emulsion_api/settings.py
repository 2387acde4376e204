"""The API's settings: the shared parts it uses plus its own, read once from the environment.

`load_api_settings` fails fast, naming every missing or malformed variable, and also
when no bearer token is configured: an API that nobody can call is a deployment error.

Bearer tokens: `EMULSION_API_TOKENS` (comma-separated) and/or `EMULSION_API_TOKENS_FILE`
(one a line). Their scopes (the collections each may use, see `scopes.py`):
`EMULSION_API_TOKEN_SCOPES`, a JSON object from the hex SHA-256 of a token to its list of
scopes, e.g. `{"9f86d0...": ["acme-*"], "60303a...": ["beta-photos", "beta-video"],
"a665a4...": ["*"]}`, or the same JSON in the file `EMULSION_API_TOKEN_SCOPES_FILE`. Without
either every token is an admin (the single-tenant setup); with one, every token must be
listed (a token left out is a start-up error, never an admin).

The two files are read again every `EMULSION_API_TOKENS_RELOAD_SECONDS` (`tokens.py`): a
token removed from the file stops working without a restart.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field

from emulsion_api.limits import LimitTable, parse_limits
from emulsion_api.scopes import EVERYTHING, Scopes, check_digest, token_digest
from emulsion_runtime.settings import (
    KubeSettings,
    NatsSettings,
    ProfilesSettings,
    S3Settings,
    ServiceSettings,
    SettingsError,
    load_settings,
)

MIB = 1024 * 1024
# Where `make web` writes the browser uploader in a checkout (services/api/src/... -> repo).
CHECKOUT_WEB_DIR = Path(__file__).resolve().parents[4] / "clients" / "web" / "dist"


class ApiSettings(ServiceSettings, NatsSettings, S3Settings, KubeSettings, ProfilesSettings):
    # Bearer tokens, comma-separated (and/or one a line in EMULSION_API_TOKENS_FILE).
    api_tokens: str = Field(default="", validation_alias="EMULSION_API_TOKENS")
    # A file of bearer tokens, one a line (the chart mounts a Secret here); re-read while
    # the API runs (EMULSION_API_TOKENS_RELOAD_SECONDS), so removing a token revokes it.
    api_tokens_file: str | None = Field(default=None, validation_alias="EMULSION_API_TOKENS_FILE")
    # JSON: {"<sha256 of a token>": ["<collection>" | "<prefix>-*" | "*", ...], ...}
    api_token_scopes: str = Field(default="", validation_alias="EMULSION_API_TOKEN_SCOPES")
    # The same JSON in a file (the chart mounts a ConfigMap here); re-read like the tokens.
    api_token_scopes_file: str | None = Field(
        default=None, validation_alias="EMULSION_API_TOKEN_SCOPES_FILE"
    )
    # Per-token limits (limits.py), JSON: {"default": {...}, "tokens": {"<sha256>": {...}}}
    # with presignsPerSecond, presignBurst, notifiesPerSecond, notifyBurst, itemsInFlight
    # and watches; empty: the built-in defaults for every token.
    api_token_limits: str = Field(default="", validation_alias="EMULSION_API_TOKEN_LIMITS")
    # The same JSON in a file (the chart mounts a ConfigMap here); re-read like the tokens.
    api_token_limits_file: str | None = Field(
        default=None, validation_alias="EMULSION_API_TOKEN_LIMITS_FILE"
    )
    # How often the tokens and scopes files are read again: a revoked token stops
    # working within this long (plus the kubelet's delay in updating a mounted Secret).
    api_tokens_reload_seconds: float = Field(
        default=5.0, gt=0, le=60, validation_alias="EMULSION_API_TOKENS_RELOAD_SECONDS"
    )
    # The namespace the API creates IngestJobs in.
    namespace: str = Field(default="default", validation_alias="EMULSION_NAMESPACE")
    # Uploads: the largest original a client may POST, and how long a presigned form lives.
    upload_max_bytes: int = Field(
        default=100 * MIB, ge=1, validation_alias="EMULSION_UPLOAD_MAX_BYTES"
    )
    # How long a presigned upload form stays valid.
    upload_expiry_seconds: int = Field(
        default=900, ge=1, le=7 * 86400, validation_alias="EMULSION_UPLOAD_EXPIRY_SECONDS"
    )
    # A gallery of a few thousand files is one request; larger ones are split client-side.
    max_upload_batch: int = Field(default=5000, ge=1, validation_alias="EMULSION_MAX_UPLOAD_BATCH")
    # Items one POST /v1/ingests may name (split into several jobs when large).
    max_request_items: int = Field(
        default=10_000, ge=1, validation_alias="EMULSION_MAX_REQUEST_ITEMS"
    )
    # Bounds every request body; 10,000 items of the longest keys and names fit in 4 MiB.
    max_body_bytes: int = Field(
        default=4 * MIB, ge=1024, validation_alias="EMULSION_MAX_BODY_BYTES"
    )
    # Longest `?wait=` a client may ask for; a watch is held open that long.
    max_wait_seconds: float = Field(
        default=60.0, gt=0, validation_alias="EMULSION_MAX_WAIT_SECONDS"
    )
    # Download URLs: a public base URL (a CDN in front of the bucket) or presigned GETs.
    public_base_url: str | None = Field(default=None, validation_alias="EMULSION_PUBLIC_BASE_URL")
    # How long a presigned download URL stays valid.
    download_expiry_seconds: int = Field(
        default=3600, ge=1, le=7 * 86400, validation_alias="EMULSION_DOWNLOAD_EXPIRY_SECONDS"
    )
    # Threads for blocking S3 calls, and the apiserver connections calls share (async).
    io_threads: int = Field(default=32, ge=1, le=512, validation_alias="EMULSION_API_IO_THREADS")
    # Most open watches (long polls and event streams), each on a connection of its own.
    max_watches: int = Field(default=64, ge=1, le=4096, validation_alias="EMULSION_API_MAX_WATCHES")
    # ttlSecondsAfterFinished of the jobs the API creates: finished jobs expire (an hour
    # by default) so etcd does not grow with every ingest ever made. It also bounds the
    # Idempotency-Key window (earlier jobs are found by label while they exist).
    ttl_seconds_after_finished: int | None = Field(
        default=3600, ge=0, le=31_536_000, validation_alias="EMULSION_JOB_TTL_SECONDS"
    )
    # Prometheus `/metrics` is served on this port, apart from the public API's.
    metrics_port: int = Field(
        default=9090, ge=1, le=65535, validation_alias="EMULSION_METRICS_PORT"
    )
    # Browser pages on these origins may call the API (CORS), comma-separated, e.g.
    # `https://gallery.example.com,https://admin.example.com`; empty: none (same origin only).
    cors_allowed_origins: str = Field(default="", validation_alias="EMULSION_CORS_ALLOWED_ORIGINS")
    # The browser uploader's built bundle (served at /upload); default: the checkout's.
    web_dir: str | None = Field(default=None, validation_alias="EMULSION_WEB_DIR")
    # On SIGTERM, how long open requests (event streams, long polls) may go on; past it
    # they are cut and the process exits.
    shutdown_grace_seconds: int = Field(
        default=10, ge=0, le=3600, validation_alias="EMULSION_SHUTDOWN_GRACE_SECONDS"
    )

    def web_directory(self) -> Path:
        return Path(self.web_dir) if self.web_dir else CHECKOUT_WEB_DIR

    def cors_origins(self) -> tuple[str, ...]:
        return tuple(
            o.strip().rstrip("/") for o in self.cors_allowed_origins.split(",") if o.strip()
        )

    def tokens(self) -> tuple[str, ...]:
        """Every accepted bearer token, from the variable and the mounted file together."""
        raw = self.api_tokens.split(",")
        if self.api_tokens_file:
            raw += Path(self.api_tokens_file).read_text().splitlines()
        return tuple(token.strip() for token in raw if token.strip())

    def token_scopes(self) -> str | None:
        """The scopes' JSON as configured now (the file read afresh); None: none configured."""
        if self.api_token_scopes_file:
            if self.api_token_scopes.strip():
                raise ValueError("set EMULSION_API_TOKEN_SCOPES or its _FILE, not both")
            return Path(self.api_token_scopes_file).read_text()
        return self.api_token_scopes if self.api_token_scopes.strip() else None

    def token_limits(self) -> LimitTable:
        """The per-token limits as configured now (the file read afresh); raises OSError
        when the file cannot be read, ValueError when it is malformed."""
        if self.api_token_limits_file:
            if self.api_token_limits.strip():
                raise ValueError("set EMULSION_API_TOKEN_LIMITS or its _FILE, not both")
            return parse_limits(Path(self.api_token_limits_file).read_text())
        return parse_limits(self.api_token_limits)

    def scoped_tokens(self) -> tuple[tuple[str, Scopes], ...]:
        """Every token with its scopes, the files read now; raises OSError when a file
        cannot be read, ValueError on malformed or missing scopes."""
        written = self.token_scopes()
        if written is None:
            return tuple((token, EVERYTHING) for token in self.tokens())
        try:
            configured = json.loads(written)
        except ValueError as error:
            raise ValueError(f"not JSON: {error}") from None
        if not isinstance(configured, dict) or not all(
            isinstance(entries, list) and all(isinstance(entry, str) for entry in entries)
            for entries in configured.values()
        ):
            raise ValueError("must be a JSON object of token SHA-256 -> list of scopes")
        scopes = {
            check_digest(digest): Scopes.parse(entries) for digest, entries in configured.items()
        }
        unscoped = [token_digest(t)[:12] for t in self.tokens() if token_digest(t) not in scopes]
        if unscoped:
            raise ValueError(
                f"no scopes for the token(s) with SHA-256 {', '.join(unscoped)}...; list every "
                'token (["*"] for an admin)'
            )
        return tuple((token, scopes[token_digest(token)]) for token in self.tokens())


def load_api_settings() -> ApiSettings:
    settings = load_settings(ApiSettings)
    try:
        tokens = settings.tokens()
    except OSError as error:
        raise SettingsError(f"EMULSION_API_TOKENS_FILE: cannot read: {error}") from None
    try:
        settings.scoped_tokens()
    except OSError as error:
        raise SettingsError(f"EMULSION_API_TOKEN_SCOPES_FILE: cannot read: {error}") from None
    except ValueError as error:
        source = "EMULSION_API_TOKEN_SCOPES" + ("_FILE" if settings.api_token_scopes_file else "")
        raise SettingsError(f"invalid configuration:\n  {source}: {error}") from None
    try:
        settings.token_limits()
    except OSError as error:
        raise SettingsError(f"EMULSION_API_TOKEN_LIMITS_FILE: cannot read: {error}") from None
    except ValueError as error:
        source = "EMULSION_API_TOKEN_LIMITS" + ("_FILE" if settings.api_token_limits_file else "")
        raise SettingsError(f"invalid configuration:\n  {source}: {error}") from None
    if not tokens:
        raise SettingsError(
            "invalid configuration:\n  EMULSION_API_TOKENS or EMULSION_API_TOKENS_FILE: "
            "no bearer token configured"
        )
    return settings
