"""The accepted formats: one list for the API's uploads and the processors' decoders."""

import typing

from emulsion_contracts import formats


def test_the_content_type_literal_is_the_accepted_list() -> None:
    assert typing.get_args(formats.AcceptedContentType) == formats.ACCEPTED_CONTENT_TYPES


def test_svg_and_other_image_types_are_not_accepted() -> None:
    for refused in ("image/svg+xml", "image/tiff", "image/x-eps", "image/jxl", "image/bmp"):
        assert refused not in formats.ACCEPTED_CONTENT_TYPES


def test_phone_photos_are_accepted_as_heic_heif_and_avif() -> None:
    for accepted in ("image/heic", "image/heif", "image/avif"):
        assert accepted in formats.ACCEPTED_CONTENT_TYPES
    # AVIF is tried before HEIF: an AVIF file is a HEIF container too.
    names = list(formats.ACCEPTED_FORMATS)
    assert names.index("AVIF") < names.index("HEIF")
