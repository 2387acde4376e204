"""Which collections a bearer token may use: its scopes.

A scope is a collection name (`acme-photos`), a prefix of names followed by `*`
(`acme-*`: every collection whose name starts with `acme-`), or `*` alone: the admin
scope, every collection. Tokens are configured with their scopes by the SHA-256 of the
token (`EMULSION_API_TOKEN_SCOPES`), so the scopes can sit in plain configuration while
the tokens stay in a Secret.

A prefix must end with a separator (`-`, `.` or `_`) before the `*`, so the written
form says where the prefix ends: `acme-*` covers `acme-photos` but never `acmecorp`.
`acme*` was once accepted and covered both; it is refused now (a start-up error, and a
reload that keeps the previous configuration), naming the two ways to write what was
meant. `acme-*` does not cover `acme` itself: list `acme` beside it for that.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from emulsion_contracts import keys

ADMIN: Final = "*"
# Where a prefix may end: the characters that separate the parts of a collection name.
SEPARATORS: Final = "-._"
# A prefix: the start of a collection name up to and including a separator.
_PREFIX_RE: Final = re.compile(
    rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{keys.COLLECTION_MAX - 3}}}[{re.escape(SEPARATORS)}]"
)
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
            elif entry.endswith("*") and _PREFIX_RE.fullmatch(entry[:-1]) and ".." not in entry:
                prefixes.append(entry[:-1])
            elif entry.endswith("*") and _is_collection(entry[:-1]):
                # The old, ambiguous form: `acme*` also covered `acmecorp`. Refused rather
                # than reinterpreted, so no token silently gains or loses a collection.
                stem = entry[:-1]
                raise ValueError(
                    f"scope {entry!r}: a prefix must end with a separator ({' '.join(SEPARATORS)}) "
                    f"before the '*', so it says where it ends; write {stem + '-*'!r} for "
                    f"the names starting with {stem + '-'!r}, or {stem!r} for that one "
                    "collection (both for both)"
                )
            else:
                try:
                    names.add(keys.check_collection(entry))
                except keys.InvalidKey:
                    raise ValueError(
                        f"scope {entry!r} is neither '*', a collection name, nor a prefix "
                        "of one ending with a separator (- . _) followed by '*' (acme-*)"
                    ) from None
        return cls(frozenset(names), tuple(prefixes), admin)

    def allows(self, collection: str) -> bool:
        return (
            self.admin
            or collection in self.names
            or any(collection.startswith(prefix) for prefix in self.prefixes)
        )


EVERYTHING: Final = Scopes(admin=True)


def _is_collection(value: str) -> bool:
    try:
        keys.check_collection(value)
    except keys.InvalidKey:
        return False
    return True


def token_digest(token: str) -> str:
    """How configuration names a token: the hex SHA-256 of its UTF-8 bytes
    (`printf %s "$TOKEN" | sha256sum`)."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_digest(value: str) -> str:
    if not _DIGEST_RE.fullmatch(value):
        raise ValueError(f"{value[:80]!r} is not the hex SHA-256 of a token (64 of 0-9a-f)")
    return value
