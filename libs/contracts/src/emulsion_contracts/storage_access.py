"""Which component may do what to which objects: the least S3 policy of each, as data.

One table, from which the local stack's MinIO policies are made (`tools/devstack`), the
chart README's table is checked (`tests/charts/test_readme.py`), and the tests on the
real stack (`tests/security/test_storage_identities.py`) take what each identity must
be refused. The rules, read from each service's S3 calls:

- the **API** presigns uploads (a presigned POST is authorised as the signer's
  PutObject on `staging/`), HEADs and lists uploads, reads manifests and lists
  `assets/`, presigns downloads of originals and derivatives (GetObject), and writes
  tombstones (PutObject on `assets/`). It lists the capture-order index `taken/` (its
  entries are empty: the key says everything, so it never reads one). It never deletes,
  and never writes `originals/`, `derivatives/` or `taken/`.
- the **processor** reads an upload (GetObject on `staging/`), writes its claim marker
  `staging/<collection>/<upload-id>/.claim` and nothing else under `staging/`, copies or
  writes the original, writes derivatives, reads and conditionally writes the manifest.
  It reads a stored original (GetObject on `originals/`) to re-render an asset's crops
  around its focal point. It writes each version's capture-order index entry (an empty
  PutObject under `taken/`, before the commit), and never reads or lists that area. It
  never deletes: a superseded entry goes to the janitor like a superseded version's files.
- the **janitor** lists every area, HEADs what it deletes, reads manifests, and deletes
  (DeleteObject; DeleteObjects is authorised per key as DeleteObject). It writes only
  its own state under `janitor/` (the full pass's progress, so a restart resumes it),
  which no other component reads or writes.

Reading also needs the listing right on the same prefix: S3 answers a GET or HEAD of a
missing key with 403 instead of 404 when the caller may not list, and every service
tells "missing" (an upload not there, an asset without a manifest) from "refused".
The controller never touches S3 and has no identity here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from emulsion_contracts import keys

AREAS: Final = (keys.STAGING, keys.ORIGINALS, keys.DERIVATIVES, keys.MANIFESTS, keys.TAKEN)
# What the API reads (GetObject): every area but the index, whose keys are all it needs.
API_READ_AREAS: Final = (keys.STAGING, keys.ORIGINALS, keys.DERIVATIVES, keys.MANIFESTS)
# The processor's claim on an upload: the one object it writes under staging/.
CLAIM_PATTERN: Final = f"{keys.STAGING}*/.claim"
# The janitor's own state (the full pass's progress): outside the key layout, so no guard
# ever lets it be deleted and no other component lists it.
JANITOR_STATE: Final = "janitor/"


@dataclass(frozen=True)
class Access:
    """Key patterns (`*` matches any run of characters, `/` too) per kind of access."""

    read: tuple[str, ...] = ()  # GetObject (and HEAD)
    write: tuple[str, ...] = ()  # PutObject (and the copy target, conditional writes)
    delete: tuple[str, ...] = ()  # DeleteObject
    list: tuple[str, ...] = ()  # ListBucket restricted to these prefixes

    def allows(self, action: str, key: str) -> bool:
        """Whether `action` (read, write, delete, list) on `key` (a prefix for list) is
        granted, as the policy rendered from this grants it."""
        patterns: tuple[str, ...] = getattr(self, action)
        if action == "list":
            return any(key.startswith(prefix) for prefix in patterns)
        return any(_matches(pattern, key) for pattern in patterns)


def _matches(pattern: str, key: str) -> bool:
    head, star, tail = pattern.partition("*")
    if not star:
        return key == pattern
    return key.startswith(head) and key.endswith(tail) and len(key) >= len(head) + len(tail)


ACCESS: Final[dict[str, Access]] = {
    "api": Access(
        read=tuple(f"{area}*" for area in API_READ_AREAS),
        write=(f"{keys.STAGING}*", f"{keys.MANIFESTS}*"),
        list=(keys.STAGING, keys.MANIFESTS, keys.TAKEN),
    ),
    "processor": Access(
        # originals/: a re-render reads the stored original (its listing right makes a
        # missing one a 404, SourceMissing, rather than a refusal waited out).
        read=(f"{keys.STAGING}*", f"{keys.ORIGINALS}*", f"{keys.MANIFESTS}*"),
        write=(
            CLAIM_PATTERN,
            f"{keys.ORIGINALS}*",
            f"{keys.DERIVATIVES}*",
            f"{keys.MANIFESTS}*",
            f"{keys.TAKEN}*",
        ),
        list=(keys.STAGING, keys.ORIGINALS, keys.MANIFESTS),
    ),
    "janitor": Access(
        read=(*(f"{area}*" for area in AREAS), f"{JANITOR_STATE}*"),
        write=(f"{JANITOR_STATE}*",),
        delete=tuple(f"{area}*" for area in AREAS),
        list=(*AREAS, JANITOR_STATE),
    ),
}

_ACTIONS: Final = {
    "read": ("s3:GetObject",),
    "write": ("s3:PutObject",),
    "delete": ("s3:DeleteObject",),
}


def policy(component: str, bucket: str) -> dict[str, Any]:
    """The IAM policy document (AWS's format, which MinIO reads too) for `component`."""
    access = ACCESS[component]
    statements: list[dict[str, Any]] = []
    for kind, actions in _ACTIONS.items():
        patterns: tuple[str, ...] = getattr(access, kind)
        if patterns:
            statements.append(
                {
                    "Effect": "Allow",
                    "Action": list(actions),
                    "Resource": [f"arn:aws:s3:::{bucket}/{pattern}" for pattern in patterns],
                }
            )
    if access.list:
        statements.append(
            {
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{bucket}"],
                "Condition": {"StringLike": {"s3:prefix": [f"{p}*" for p in access.list]}},
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def policy_json(component: str, bucket: str) -> str:
    return json.dumps(policy(component, bucket), indent=2)
