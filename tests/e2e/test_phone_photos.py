"""A folder of iPhone-style photos through the real CLI and the four services as processes.

Each HEIC is what an iPhone writes: HEVC in a 512-pixel grid, a Display P3 profile, the
orientation both as the container's transform and in EXIF; one is 10-bit, one a burst
(two images, the second primary), one an AVIF; one is damaged and fails alone with its
reason. Every other photo gets every style at its upright size, turned once.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from emulsion_contracts.profiles import DEFAULT_PROFILE
from emulsion_devstack.stack import LocalStack
from tests import phone_photos as photos

from .test_gallery import api_get, ingest, manifest

# Half an iPhone's 12 MP keeps the test quick on two cores; the grid and metadata are its.
WIDTH, HEIGHT = 2016, 1512


def iphone_folder(directory: Path) -> dict[str, tuple[int, int]]:
    """Write the folder; return each photo's upright size."""
    directory.mkdir()
    p3 = photos.display_p3_icc()
    sizes: dict[str, tuple[int, int]] = {}
    for number, orientation in enumerate((1, 6, 8, 3, 6), start=1):
        upright = (HEIGHT, WIDTH) if orientation in (6, 8) else (WIDTH, HEIGHT)
        seen = photos.marked(*upright)
        name = f"IMG_{number:04d}.HEIC"
        data = photos.heic(
            photos.stored_for(seen, orientation), orientation=orientation, icc=p3, tile_size=512
        )
        (directory / name).write_bytes(data)
        sizes[name] = upright
    (directory / "IMG_0006.HEIC").write_bytes(
        photos.heic_high_depth(photos.marked(WIDTH, HEIGHT), 10, tile_size=512)
    )
    sizes["IMG_0006.HEIC"] = (WIDTH, HEIGHT)
    burst = [Image.new("RGB", (640, 480), (0, 200, 0)), photos.marked(HEIGHT, WIDTH)]
    (directory / "IMG_0007.HEIC").write_bytes(photos.multi_image_heic(burst, primary=1))
    sizes["IMG_0007.HEIC"] = (HEIGHT, WIDTH)
    (directory / "IMG_0008.avif").write_bytes(photos.avif(photos.marked(WIDTH, HEIGHT)))
    sizes["IMG_0008.avif"] = (WIDTH, HEIGHT)
    good = (directory / "IMG_0001.HEIC").read_bytes()
    (directory / "IMG_0009.HEIC").write_bytes(good[:40] + b"\xa5" * 4000)  # a damaged copy
    return sizes


def style_size(style_name: str, width: int, height: int) -> tuple[int, int]:
    style = next(s for s in DEFAULT_PROFILE.styles if s.name == style_name)
    if style.fit == "crop":
        return style.width, style.height
    scale = min(style.width / width, style.height / height, 1.0)
    return max(1, round(width * scale)), max(1, round(height * scale))


def test_a_folder_of_iphone_heics_ingests_upright_with_every_style(
    system: LocalStack, system_s3: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "DCIM"
    sizes = iphone_folder(folder)

    summary = ingest(system, folder, "iphone")

    assert summary["uploaded_files"] == 9, summary
    assert summary["succeeded"] == 8, summary["failed"]
    [failure] = summary["failed"]
    assert failure["file"] == "IMG_0009.HEIC"
    [job] = summary["jobs"]
    status = api_get(system, f"/v1/ingests/{job}")
    assert status["phase"] == "PartiallyFailed"
    [failed] = status["failures"]
    assert failed["reason"] == "CorruptImage"
    assert "HEIC/HEIF file cannot be read" in failed["message"]
    succeeded = [item for item in status["items"] if item["state"] == "succeeded"]
    assert len(succeeded) == 8
    for item in succeeded:
        name = item["asset"]
        width, height = sizes[name]
        record = manifest(system_s3, system.bucket, "iphone", item["asset"])
        expected_type = "image/avif" if name.endswith(".avif") else "image/heic"
        assert record.original.content_type == expected_type, name
        assert (record.original.width, record.original.height) == (width, height), name
        for output in item["outputs"]:
            response = httpx.get(output["url"], timeout=30)
            response.raise_for_status()
            with Image.open(io.BytesIO(response.content)) as derivative:
                assert derivative.format == "JPEG"
                assert derivative.size == style_size(output["style"], width, height), name
                assert not derivative.getexif(), "metadata must be stripped from derivatives"
                if output["style"] == "large":
                    picture = derivative.convert("RGB")
                    # The blue block top-left and red elsewhere: turned once, the
                    # primary image of the burst, colours kept through P3 and 10 bits.
                    assert _near(picture.getpixel((4, 4)), photos.BLUE), name
                    right, bottom = picture.width - 4, picture.height - 4
                    for corner in ((right, 4), (4, bottom), (right, bottom)):
                        assert _near(picture.getpixel(corner), photos.RED), (name, corner)


def _near(pixel: Any, colour: tuple[int, int, int]) -> bool:
    return all(abs(int(a) - b) < 48 for a, b in zip(pixel, colour, strict=True))
