"""`GET /v1/profiles`: the processing profiles an ingest may name, and the styles each makes.

A client picks a profile here, and a gallery knows the style names (`thumb`, `large`, ...)
it will find among an asset's outputs.
"""

from __future__ import annotations

from fastapi import APIRouter

from emulsion_api.deps import PrincipalDep, ServicesDep
from emulsion_api.errors import problems
from emulsion_api.models import ProfileInfo, ProfileList, StyleInfo
from emulsion_contracts.profiles import Profile

router = APIRouter(prefix="/v1/profiles", tags=["profiles"])


def profile_info(profile: Profile) -> ProfileInfo:
    return ProfileInfo(
        name=profile.name,
        format=profile.format,
        quality=profile.quality,
        styles=[
            StyleInfo(
                name=style.name,
                width=style.width,
                height=style.height,
                fit=style.fit,
                format=style.output_formats(profile.format)[0],
                formats=list(style.output_formats(profile.format)),
                gravity=(style.gravity or "center") if style.fit == "crop" else None,
                watermarked=style.watermark and profile.watermark is not None,
            )
            for style in profile.styles
        ],
    )


@router.get(
    "",
    response_model=ProfileList,
    operation_id="listProfiles",
    responses=problems("unauthorized", "internal"),
)
async def list_profiles(services: ServicesDep, caller: PrincipalDep) -> ProfileList:
    """Every profile, by name; profiles are the deployment's, the same for every token."""
    return ProfileList(
        items=[profile_info(services.profiles[name]) for name in sorted(services.profiles)]
    )
