"""`GET /v1/access`: which collections the caller's token may use.

The browser uploader asks this when a person signs in, so a wrong token is told at once
and a collection outside the token's scopes is refused before anything is uploaded (the
ingest itself still answers 403 for it). It tells a caller only its own scopes.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from emulsion_api.deps import PrincipalDep
from emulsion_api.errors import problems

router = APIRouter(prefix="/v1/access", tags=["access"])


class Access(BaseModel):
    all_collections: bool = Field(
        description="The token may use every collection.", examples=[False]
    )
    collections: list[str] = Field(
        description="Collections the token may use by name.", examples=[["holiday-2026"]]
    )
    prefixes: list[str] = Field(
        description="The token may use every collection whose name starts with one of these.",
        examples=[["acme-"]],
    )


@router.get(
    "",
    response_model=Access,
    operation_id="getAccess",
    responses=problems("unauthorized", "internal"),
)
async def get_access(caller: PrincipalDep) -> Access:
    """The caller's scopes; 401 for a token the API does not accept."""
    scopes = caller.scopes
    return Access(
        all_collections=scopes.admin,
        collections=sorted(scopes.names),
        prefixes=sorted(scopes.prefixes),
    )
