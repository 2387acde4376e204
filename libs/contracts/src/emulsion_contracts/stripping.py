"""The metadata a profile may strip from the stored original, by name.

Shared by the profile model (which refuses an unknown name when the profiles file is
loaded, so a typo fails the rollout instead of silently keeping GPS) and the processor
(which does the stripping). Derivatives never carry metadata at all; this is only
about the original, which is otherwise stored byte for byte as uploaded.
"""

from __future__ import annotations

from typing import Final

# Whole kinds of metadata, each removed wherever the format keeps it.
GPS: Final = "gps"  # the Exif GPS IFD (and any XMP packet that mentions GPS)
XMP: Final = "xmp"  # XMP packets: JPEG APP1 (and extended XMP), PNG iTXt, WebP XMP chunk
IPTC: Final = "iptc"  # JPEG APP13 (Photoshop resources), PNG "Raw profile type iptc"
GROUPS: Final = frozenset({GPS, XMP, IPTC})

# Exif tags that may be named one by one: the ones that identify a person, a device or a
# moment. Orientation is deliberately absent (the stored original must still display
# upright), and so are the structural tags (IFD pointers, the thumbnail's offsets), whose
# removal would break the Exif block rather than remove information.
EXIF_TAGS: Final[dict[str, int]] = {
    "ImageDescription": 0x010E,
    "Make": 0x010F,
    "Model": 0x0110,
    "Software": 0x0131,
    "DateTime": 0x0132,
    "Artist": 0x013B,
    "HostComputer": 0x013C,
    "Copyright": 0x8298,
    "DateTimeOriginal": 0x9003,
    "DateTimeDigitized": 0x9004,
    "OffsetTime": 0x9010,
    "OffsetTimeOriginal": 0x9011,
    "OffsetTimeDigitized": 0x9012,
    "MakerNote": 0x927C,
    "UserComment": 0x9286,
    "SubsecTime": 0x9290,
    "SubsecTimeOriginal": 0x9291,
    "SubsecTimeDigitized": 0x9292,
    "ImageUniqueID": 0xA420,
    "CameraOwnerName": 0xA430,
    "BodySerialNumber": 0xA431,
    "LensSpecification": 0xA432,
    "LensMake": 0xA433,
    "LensModel": 0xA434,
    "LensSerialNumber": 0xA435,
    "XPTitle": 0x9C9B,
    "XPComment": 0x9C9C,
    "XPAuthor": 0x9C9D,
    "XPKeywords": 0x9C9E,
    "XPSubject": 0x9C9F,
}
NAMES: Final = GROUPS | frozenset(EXIF_TAGS)
# Names an operator may reach for that must not be stripped, with the reason.
REFUSED: Final[dict[str, str]] = {
    "Orientation": "the stored original must keep its orientation to display upright",
    "exif": "name the Exif tags to strip (or gps); the whole Exif block holds the orientation",
}


def check_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """`names` unchanged if each is strippable; else a ValueError that says why not."""
    for name in names:
        if name in REFUSED:
            raise ValueError(f"{name!r} cannot be stripped: {REFUSED[name]}")
        if name not in NAMES:
            raise ValueError(
                f"{name!r} is not strippable metadata; known: "
                f"{', '.join(sorted(GROUPS))}, or an Exif tag: {', '.join(sorted(EXIF_TAGS))}"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"names repeat: {', '.join(names)}")
    return names
