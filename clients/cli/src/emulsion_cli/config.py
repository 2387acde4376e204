"""Where the API is and how to authenticate: `EMULSION_API_URL` and `EMULSION_TOKEN`.

`make up` writes both to `.emulsion/env`; `source .emulsion/env` and the CLI finds them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from emulsion_cli.errors import CliError


@dataclass(frozen=True)
class Config:
    api_url: str
    token: str


def load_config(environ: Mapping[str, str] | None = None) -> Config:
    environ = os.environ if environ is None else environ
    url = environ.get("EMULSION_API_URL", "").strip().rstrip("/")
    token = environ.get("EMULSION_TOKEN", "").strip()
    missing = [
        name for name, value in (("EMULSION_API_URL", url), ("EMULSION_TOKEN", token)) if not value
    ]
    if missing:
        raise CliError(
            f"{' and '.join(missing)} not set; after `make up`, run `source .emulsion/env`"
        )
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise CliError(f"EMULSION_API_URL {url!r} is not an http(s) URL")
    return Config(url, token)
