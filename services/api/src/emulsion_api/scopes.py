"""Which collections a bearer token may use: its scopes.

A scope is a collection name (`acme-photos`), a prefix of names ending in `*`
(`acme-*`: every collection whose name starts with `acme-`), or `*` alone: the admin
scope, every collection. Tokens are configured with their scopes by the SHA-256 of the
token (`EMULSION_API_TOKEN_SCOPES`), so the scopes can sit in plain configuration while
the tokens stay in a Secret.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from emulsion_contracts import keys

ADMIN: Final = "*"
_PREFIX_RE: Final = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{keys.COLLECTION_MAX - 2}}}")
_DIGEST_RE: Final = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Scopes:
    names: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    admin: bool = False

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Scopes:
        """Scopes from their written form; raises ValueError naming a malformed entry."""
        names: set[str] = set()
        prefixes: list[str] = []
        admin = False
        for entry in entries:
            if entry == ADMIN:
                admin = True
            elif entry.endswith("*") and _PREFIX_RE.fullmatch(entry[:-1]):
                prefixes.append(entry[:-1])
            else:
                try:
                    names.add(keys.check_collection(entry))
                except keys.InvalidKey:
                    raise ValueError(
                        f"scope {entry!r} is neither '*', a collection name, nor a prefix "
                        "of one followed by '*'"
                    ) from None
        return cls(frozenset(names), tuple(prefixes), admin)

    def allows(self, collection: str) -> bool:
        return (
            self.admin
            or collection in self.names
            or any(collection.startswith(prefix) for prefix in self.prefixes)
        )


EVERYTHING: Final = Scopes(admin=True)


def token_digest(token: str) -> str:
    """How configuration names a token: the hex SHA-256 of its UTF-8 bytes
    (`printf %s "$TOKEN" | sha256sum`)."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_digest(value: str) -> str:
    if not _DIGEST_RE.fullmatch(value):
        raise ValueError(f"{value[:80]!r} is not the hex SHA-256 of a token (64 of 0-9a-f)")
    return value
