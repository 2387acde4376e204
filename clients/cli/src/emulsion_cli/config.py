"""Where the API is and how to authenticate, from flags, the environment or a config file.

Precedence, highest first (the same for each setting on its own):

1. flags: `--api-url`, `--token-file`, `--context`
2. environment: `EMULSION_API_URL`, `EMULSION_TOKEN` (then `EMULSION_TOKEN_FILE`),
   `EMULSION_CONTEXT`
3. the config file's context: `--context`/`EMULSION_CONTEXT` if given, else `current-context`

The config file (`$EMULSION_CONFIG`, else `$XDG_CONFIG_HOME/emulsion/config.yaml`, else
`~/.config/emulsion/config.yaml`) holds named contexts, like a kubeconfig:

    current-context: local
    contexts:
      local:
        api-url: http://127.0.0.1:8000
        token-file: ~/src/emulsion/.emulsion/token

It names token files, never tokens, so it can be shared or checked in. `make up` writes
`EMULSION_API_URL` and `EMULSION_TOKEN` to `.emulsion/env` (`source .emulsion/env`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import yaml

from emulsion_cli.errors import UsageError

CURRENT_CONTEXT_KEY: Final = "current-context"


@dataclass(frozen=True)
class Config:
    api_url: str
    token: str


@dataclass(frozen=True)
class Context:
    api_url: str | None = None
    # As written in the file: may start with '~' or be relative to the file's directory.
    token_file: str | None = None

    def document(self) -> dict[str, str]:
        fields = {"api-url": self.api_url, "token-file": self.token_file}
        return {key: value for key, value in fields.items() if value is not None}


@dataclass(frozen=True)
class Overrides:
    """What the command line says; None where it says nothing."""

    api_url: str | None = None
    token_file: str | None = None
    context: str | None = None


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    if explicit := environ.get("EMULSION_CONFIG"):
        return Path(explicit).expanduser()
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "emulsion" / "config.yaml"


@dataclass
class ConfigFile:
    path: Path
    current_context: str | None = None
    contexts: dict[str, Context] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> ConfigFile:
        """The file's contexts; no file is an empty configuration, a malformed one is an
        error that names the file (silently ignoring it would send requests elsewhere)."""
        try:
            raw: Any = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            return cls(path)
        except (OSError, yaml.YAMLError) as error:
            raise UsageError(f"cannot read the config file {path}: {error}") from None
        if raw is None:
            return cls(path)
        if not isinstance(raw, dict) or not isinstance(raw.get("contexts", {}), dict):
            raise UsageError(f"config file {path}: expected a mapping with `contexts:`")
        contexts: dict[str, Context] = {}
        for name, entry in (raw.get("contexts") or {}).items():
            if not isinstance(entry, dict) or set(entry) - {"api-url", "token-file"}:
                raise UsageError(
                    f"config file {path}: context {name!r} may only have api-url and token-file"
                )
            contexts[str(name)] = Context(
                _optional_str(entry.get("api-url")), _optional_str(entry.get("token-file"))
            )
        current = _optional_str(raw.get(CURRENT_CONTEXT_KEY))
        return cls(path, current, contexts)

    def save(self) -> None:
        """Atomically: an interrupted write leaves the previous file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        document: dict[str, Any] = {}
        if self.current_context is not None:
            document[CURRENT_CONTEXT_KEY] = self.current_context
        document["contexts"] = {name: c.document() for name, c in sorted(self.contexts.items())}
        descriptor, temporary = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
        try:
            with os.fdopen(descriptor, "w") as stream:
                yaml.safe_dump(document, stream, sort_keys=False, allow_unicode=True)
            Path(temporary).replace(self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                Path(temporary).unlink()
            raise

    def context(self, name: str) -> Context:
        try:
            return self.contexts[name]
        except KeyError:
            known = ", ".join(sorted(self.contexts)) or "none"
            raise UsageError(
                f"no context {name!r} in {self.path} (known: {known}); "
                "add it with `emulsion config set-context`"
            ) from None

    def set_context(self, name: str, api_url: str | None, token_file: str | None) -> Context:
        """Create or update a context; settings not given keep their value."""
        if api_url is not None:
            check_url(api_url, "--api-url")
        current = self.contexts.get(name, Context())
        updated = replace(
            current,
            api_url=api_url.rstrip("/") if api_url is not None else current.api_url,
            token_file=token_file if token_file is not None else current.token_file,
        )
        self.contexts[name] = updated
        return updated

    def use_context(self, name: str) -> None:
        self.context(name)
        self.current_context = name

    def token_path(self, context: Context) -> Path | None:
        if context.token_file is None:
            return None
        path = Path(context.token_file).expanduser()
        return path if path.is_absolute() else self.path.parent / path


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)


def check_url(url: str, origin: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"{origin} {url!r} is not an http(s) URL")
    return url


def read_token(path: Path, origin: str) -> str:
    try:
        token = path.read_text().strip()
    except OSError as error:
        raise UsageError(
            f"cannot read the token file {path} ({origin}): {error.strerror}"
        ) from None
    if not token:
        raise UsageError(f"the token file {path} ({origin}) is empty")
    return token


def load_config(
    environ: Mapping[str, str] | None = None, overrides: Overrides | None = None
) -> Config:
    """The API URL and token, each from the highest source that has it (module docstring)."""
    environ = os.environ if environ is None else environ
    overrides = overrides or Overrides()
    file = ConfigFile.load(config_path(environ))
    context_name = overrides.context or environ.get("EMULSION_CONTEXT") or file.current_context
    context = file.context(context_name) if context_name else Context()
    where = f"context {context_name!r} in {file.path}"

    url, url_origin = "", ""
    for value, origin in (
        (overrides.api_url, "--api-url"),
        (environ.get("EMULSION_API_URL"), "EMULSION_API_URL"),
        (context.api_url, where),
    ):
        if value and value.strip():
            url, url_origin = value.strip().rstrip("/"), origin
            break

    token = ""
    if overrides.token_file:
        token = read_token(Path(overrides.token_file).expanduser(), "--token-file")
    elif environ.get("EMULSION_TOKEN", "").strip():
        token = environ["EMULSION_TOKEN"].strip()
    elif environ.get("EMULSION_TOKEN_FILE", "").strip():
        token = read_token(Path(environ["EMULSION_TOKEN_FILE"]).expanduser(), "EMULSION_TOKEN_FILE")
    elif (path := file.token_path(context)) is not None:
        token = read_token(path, where)

    missing = [
        what
        for what, value in (
            ("the API URL (--api-url, EMULSION_API_URL)", url),
            ("the token (--token-file, EMULSION_TOKEN, EMULSION_TOKEN_FILE)", token),
        )
        if not value
    ]
    if missing:
        raise UsageError(
            f"{' and '.join(missing)} not set, nor in a config context ({file.path}); "
            "after `make up`, run `source .emulsion/env`, or see `emulsion config --help`"
        )
    return Config(check_url(url, url_origin), token)
