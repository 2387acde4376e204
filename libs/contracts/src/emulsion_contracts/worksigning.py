"""Work messages the processors can trust: the controller signs each, processors verify.

The signature is an HMAC-SHA256, with a key only the controller and the processors hold,
over the subject and the exact body bytes; it travels in the `Emulsion-Signature`
header as `v1=<base64>`. The body names the job, the item, the source, the collection,
the asset and the version, so nobody without the key can make a processor write or
commit anything: a message that fails (no header, another key, a changed body or subject)
is refused before any of it is read.

Headers other than the signature are not covered, on purpose: a re-dispatch (a fresh
`Nats-Msg-Id`) and a processor's hand-back (the same subject and body republished with
another id and a delivery count) stay valid without the key, and nothing in those headers
decides what is written. Replaying a signed message repeats work the controller asked for,
which every item already tolerates (it is idempotent by its version).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Final

HEADER: Final = "Emulsion-Signature"
SCHEME: Final = "v1"
# A key shorter than this is a configuration mistake, refused at start-up.
MIN_KEY_LENGTH: Final = 32
# Domain separation: the same key can never be made to sign something else by accident.
_CONTEXT: Final = b"emulsion-work-v1\x00"


def _mac(key: bytes, subject: str, body: bytes) -> bytes:
    # NATS subjects never contain NUL, so subject and body cannot be shifted into each other.
    return hmac.new(key, _CONTEXT + subject.encode() + b"\x00" + body, hashlib.sha256).digest()


def sign(key: bytes, subject: str, body: bytes) -> str:
    """The header value for a work message on `subject` with exactly these `body` bytes."""
    return f"{SCHEME}={base64.b64encode(_mac(key, subject, body)).decode()}"


def signed_headers(
    key: bytes, subject: str, body: bytes, headers: dict[str, str] | None = None
) -> dict[str, str]:
    """`headers` plus the signature (a new dict)."""
    return {**(headers or {}), HEADER: sign(key, subject, body)}


def verify(key: bytes, subject: str, body: bytes, header: str | None) -> bool:
    """Whether `header` is this key's signature of `subject` and `body` (constant time)."""
    if not header:
        return False
    scheme, _, encoded = header.strip().partition("=")
    if scheme != SCHEME:
        return False
    try:
        given = base64.b64decode(encoded, validate=True)
    except ValueError:
        return False
    return hmac.compare_digest(given, _mac(key, subject, body))


def refusal(key: bytes, subject: str, body: bytes, header: str | None) -> str | None:
    """Why a message fails verification ("missing" or "invalid"), or None if it passes."""
    if not header:
        return "missing"
    return None if verify(key, subject, body, header) else "invalid"
