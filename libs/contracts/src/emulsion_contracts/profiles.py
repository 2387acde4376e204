"""Named style sets ("profiles"). The default is the seeds' Paperclip set; others come from
a mounted YAML/JSON file (`EMULSION_PROFILES_FILE`). The API validates profile names
against the same set the processors use, so both read it through `load_profiles`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter

from emulsion_contracts import stripping
from emulsion_contracts.formats import OutputFormat
from emulsion_contracts.messages import DEFAULT_PROFILE_NAME, StyleSpec


class Watermark(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str | None = None
    # A key in the bucket holding a PNG with transparency, as an alternative to text.
    image_key: str | None = None
    position: Literal["center", "bottom-right", "bottom-left", "top-right", "top-left"] = (
        "bottom-right"
    )
    opacity: Annotated[float, Field(gt=0, le=1)] = 0.5


class OriginalPolicy(BaseModel):
    """What happens to the stored original: by default it is the upload, byte for byte.

    `strip` names metadata to remove from it without re-encoding the image (see
    `emulsion_contracts.stripping` for the names); an unknown name fails the load.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    strip: Annotated[tuple[str, ...], AfterValidator(stripping.check_names)] = ()


class Profile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    styles: tuple[StyleSpec, ...]
    format: OutputFormat = "jpeg"
    quality: Annotated[int, Field(ge=1, le=100)] = 82
    watermark: Watermark | None = None
    original: OriginalPolicy = OriginalPolicy()


DEFAULT_PROFILE = Profile(
    name=DEFAULT_PROFILE_NAME,
    styles=(
        StyleSpec(name="large", width=800, height=800, fit="fit"),
        StyleSpec(name="medium", width=300, height=300, fit="fit"),
        StyleSpec(name="thumb", width=100, height=100, fit="crop"),
        StyleSpec(name="tiny", width=50, height=50, fit="crop"),
        StyleSpec(name="really_tiny", width=25, height=25, fit="crop"),
    ),
)

_PROFILE_LIST = TypeAdapter(list[Profile])


def load_profiles(path: str | Path | None) -> dict[str, Profile]:
    """The built-in default plus the profiles in `path` (a list of profiles, YAML or JSON)."""
    profiles = {DEFAULT_PROFILE.name: DEFAULT_PROFILE}
    if path:
        for profile in _PROFILE_LIST.validate_python(yaml.safe_load(Path(path).read_text())):
            profiles[profile.name] = profile
    return profiles
