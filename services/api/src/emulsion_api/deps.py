"""What routes depend on: the app's clients and the authenticated caller, as `Annotated` aliases."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from emulsion_api.apiserver import Kube
from emulsion_api.commits import GroupCommit
from emulsion_api.errors import ApiError
from emulsion_api.jetstream import Bus
from emulsion_api.limits import DEFAULT_LIMITS, Limiter, TokenLimits
from emulsion_api.records import Records
from emulsion_api.scopes import Scopes
from emulsion_api.settings import ApiSettings
from emulsion_api.store import Store
from emulsion_api.tokens import Tokens
from emulsion_contracts import keys
from emulsion_contracts.profiles import Profile


@dataclass(frozen=True)
class Services:
    """Everything the routes use, made once in the app's lifespan."""

    settings: ApiSettings
    # Every accepted token with the collections it may use, re-read from its files.
    tokens: Tokens
    profiles: dict[str, Profile]
    kube: Kube
    store: Store
    bus: Bus
    # Item lists, outcomes, failures and summaries kept in JetStream (emulsion_api.records).
    records: Records
    # Concurrent small ingests of one caller, collection and profile share a create.
    commits: GroupCommit
    # Per-token limits of this pod (limits.py).
    limiter: Limiter


@dataclass(frozen=True)
class Principal:
    # A hash of the caller's token: scopes Idempotency-Keys per caller, never stored in clear.
    id: str
    scopes: Scopes
    # The token's limits (limits.py), as configured when the request came in.
    limits: TokenLimits = DEFAULT_LIMITS

    @property
    def owner(self) -> str:
        """The caller's identity as recorded with its uploads: the first 16 hex digits of
        its token's SHA-256 (enough to tell tokens apart, useless to find one)."""
        return self.id[:16]

    def may_read(self, collection: str) -> bool:
        """Whether the caller may see `collection`; a route answers 404 when not, exactly
        as for something that does not exist, so a token learns nothing of other tenants."""
        return self.scopes.allows(collection)

    def may_use_upload(self, key: str, collection: str | None = None) -> bool:
        """Whether `key` is an upload presigned for a collection the caller may use (and,
        given `collection`, for that one): the only uploads the API looks up or ingests
        for it. Any other key is answered as if it did not exist, without a read."""
        presigned_for = keys.staging_collection(key)
        if presigned_for is None or not self.scopes.allows(presigned_for):
            return False
        return collection is None or presigned_for == collection

    def check_write(self, collection: str) -> None:
        """Refuse (403) a change to a collection outside the caller's scopes."""
        if not self.scopes.allows(collection):
            raise ApiError(403, "forbidden", f"this token may not change collection {collection!r}")


# Dependencies are `async def` although they never await: FastAPI runs plain `def`
# dependencies on a worker thread, a hop per dependency per request.
async def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


_bearer = HTTPBearer(auto_error=False, description="A token from EMULSION_API_TOKENS")


async def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    offered = (credentials.credentials if credentials else "").encode()
    accepted: Scopes | None = None
    # Compare with every token, each in constant time: neither timing nor the position
    # of the matching token tells a caller anything.
    for token, scopes in (await services(request)).tokens.current:
        if hmac.compare_digest(offered, token):
            accepted = scopes
    if not offered or accepted is None:
        raise ApiError(
            401,
            "unauthorized",
            "a valid bearer token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    digest = hashlib.sha256(offered).hexdigest()
    return Principal(digest[:32], accepted, (await services(request)).tokens.limits.of(digest))


ServicesDep = Annotated[Services, Depends(services)]
PrincipalDep = Annotated[Principal, Depends(principal)]


async def following(request: Request, caller: PrincipalDep) -> AsyncIterator[None]:
    """Hold one of the caller's open follows (limits.py) for the whole response: an
    event stream keeps it until the stream ends, not just while a watch is open."""
    with (await services(request)).limiter.following(caller.owner, caller.limits):
        yield


FollowingDep = Annotated[None, Depends(following)]
