"""A demo gallery of photo-like images: deterministic by seed, generated once, cached.

Each image is a soft scene (gradients and blurred shapes drawn small, then enlarged)
plus sensor-like grain (a tile of seeded noise), so JPEG sizes are those of real
photos: about 0.4 MB per megapixel at quality 90. Sizes run from 2 to 24 MP; some
portraits are stored sideways with EXIF orientation 6 or 8, as cameras do; a few
images are PNG or WebP (screenshots and web exports, so kept to a few MP).

The gallery lives in `~/.cache/emulsion/gallery/<hash of the parameters>/`; a
`.complete` marker written last makes an interrupted generation start over.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final, Literal

from PIL import Image, ImageChops, ImageDraw, ImageFilter

from emulsion_cli.resume import cache_root

DEFAULT_COUNT: Final = 40
DEFAULT_SEED: Final = 1361
GENERATOR_VERSION: Final = 1  # part of the cache key: a changed generator makes a new gallery
MARKER: Final = ".complete"
# The scene is drawn at 1/SCALE of the final size; the enlargement makes it soft.
SCALE: Final = 8
NOISE_TILE: Final = 509  # prime, so the tiling does not line up with JPEG's 8x8 blocks
EXIF_ORIENTATION: Final = 0x0112
EXIF_MAKE: Final = 0x010F
EXIF_MODEL: Final = 0x0110
EXIF_DATETIME: Final = 0x0132

Format = Literal["JPEG", "PNG", "WEBP"]
EXTENSIONS: Final[dict[str, str]] = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


@dataclass(frozen=True)
class GalleryParams:
    count: int = DEFAULT_COUNT
    seed: int = DEFAULT_SEED
    min_megapixels: float = 2.0
    max_megapixels: float = 24.0

    def digest(self) -> str:
        text = json.dumps({**asdict(self), "generator": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ImageSpec:
    """Everything that decides one image, drawn from the seed before any pixel is made."""

    name: str
    seed: int
    width: int  # as stored (before the EXIF orientation is applied)
    height: int
    format: Format
    orientation: int  # EXIF orientation: 1 upright, 6 or 8 stored sideways
    quality: int

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6


def plan(params: GalleryParams) -> list[ImageSpec]:
    rng = random.Random(params.seed)  # noqa: S311 - reproducible demo pixels, not secrets
    return [_spec(index, rng, params) for index in range(params.count)]


def _spec(index: int, rng: random.Random, params: GalleryParams) -> ImageSpec:
    roll = rng.random()
    image_format: Format = "PNG" if roll < 0.06 else "WEBP" if roll < 0.12 else "JPEG"
    low = math.log(params.min_megapixels)
    high = math.log(
        params.max_megapixels if image_format == "JPEG" else min(6.0, params.max_megapixels)
    )
    megapixels = math.exp(rng.uniform(low, max(low, high)))
    aspect = rng.choice((3 / 2, 4 / 3, 16 / 9, 1.0))
    long_side = round(math.sqrt(megapixels * 1e6 * aspect))
    short_side = round(long_side / aspect)
    portrait = rng.random() < 0.35
    orientation = 1
    if portrait and image_format == "JPEG" and rng.random() < 0.6:
        # Stored landscape, shown portrait: the processor has to apply the orientation.
        orientation = rng.choice((6, 8))
        width, height = long_side, short_side
    elif portrait:
        width, height = short_side, long_side
    else:
        width, height = long_side, short_side
    name = f"IMG_{index + 1:04d}.{EXTENSIONS[image_format]}"
    return ImageSpec(
        name, rng.getrandbits(63), width, height, image_format, orientation, rng.randint(85, 93)
    )


def _random_colour(rng: random.Random) -> tuple[int, int, int]:
    return (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255))


def _band(size: tuple[int, int], rng: random.Random) -> Image.Image:
    """One colour channel: a ramp at a random angle, squeezed into a random range."""
    angle, low, high = rng.uniform(0, 360), rng.randint(0, 90), rng.randint(150, 255)
    ramp = Image.linear_gradient("L").rotate(angle, resample=Image.Resampling.BILINEAR)
    return ramp.resize(size, Image.Resampling.BILINEAR).point(
        lambda v: low + v * (high - low) // 255
    )


def _scene(spec: ImageSpec, rng: random.Random) -> Image.Image:
    small = (max(spec.width // SCALE, 16), max(spec.height // SCALE, 16))
    scene = Image.merge("RGB", [_band(small, rng) for _ in range(3)])
    draw = ImageDraw.Draw(scene)
    for _ in range(rng.randint(6, 18)):
        x, y = rng.randrange(small[0]), rng.randrange(small[1])
        radius = rng.randint(2, max(3, min(small) // 3))
        box = (x - radius, y - radius, x + radius, y + radius)
        if rng.random() < 0.5:
            draw.ellipse(box, fill=_random_colour(rng))
        else:
            points = [
                (x + rng.randint(-radius, radius), y + rng.randint(-radius, radius))
                for _ in range(rng.randint(3, 6))
            ]
            draw.polygon(points, fill=_random_colour(rng))
    scene = scene.filter(ImageFilter.GaussianBlur(rng.uniform(0.8, 2.5)))
    return scene.resize((spec.width, spec.height), Image.Resampling.BILINEAR)


def _grain(spec: ImageSpec, rng: random.Random) -> Image.Image:
    """Seeded noise around 128 (tiled: making 24 MP of noise per image would be slow)."""
    amplitude = rng.uniform(10, 22)
    tile = Image.frombytes("L", (NOISE_TILE, NOISE_TILE), rng.randbytes(NOISE_TILE * NOISE_TILE))
    tile = tile.point(lambda v: round(128 + (v - 128) * amplitude / 128))
    # Grey grain (the same in every channel), made RGB at tile size where it is cheap.
    tile = Image.merge("RGB", (tile, tile, tile))
    noise = Image.new("RGB", (spec.width, spec.height))
    for top in range(0, spec.height, NOISE_TILE):
        for left in range(0, spec.width, NOISE_TILE):
            noise.paste(tile, (left, top))
    return noise


def render(spec: ImageSpec) -> Image.Image:
    rng = random.Random(spec.seed)  # noqa: S311 - reproducible demo pixels, not secrets
    return ImageChops.add(_scene(spec, rng), _grain(spec, rng), scale=1.0, offset=-128)


def write(spec: ImageSpec, directory: Path) -> Path:
    image = render(spec)
    target = directory / spec.name
    partial = directory / f".{spec.name}.partial"
    if spec.format == "JPEG":
        exif = Image.Exif()
        exif[EXIF_MAKE] = "Emulsion"
        exif[EXIF_MODEL] = "Demo Camera"
        exif[EXIF_DATETIME] = "2026:06:21 12:00:00"
        exif[EXIF_ORIENTATION] = spec.orientation
        image.save(partial, "JPEG", quality=spec.quality, exif=exif.tobytes())
    elif spec.format == "PNG":
        image.save(partial, "PNG", compress_level=1)
    else:
        image.save(partial, "WEBP", quality=spec.quality, method=0)
    partial.replace(target)
    return target


def _write_into(job: tuple[ImageSpec, str]) -> str:
    spec, directory = job
    return str(write(spec, Path(directory)))


def gallery_dir(params: GalleryParams, root: Path | None = None) -> Path:
    return (root or cache_root() / "gallery") / params.digest()


def ensure_gallery(
    params: GalleryParams, root: Path | None = None, workers: int | None = None
) -> Path:
    """The gallery's directory, generating it first unless a complete one is cached."""
    directory = gallery_dir(params, root)
    if (directory / MARKER).exists():
        return directory
    if directory.exists():
        shutil.rmtree(directory, ignore_errors=True)
    # Generated beside its place and renamed into it, so two runs at once (parallel test
    # workers, two terminals) never see each other's half-written gallery.
    directory.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f"{directory.name}.building-", dir=directory.parent))
    _generate(params, building, workers)
    try:
        building.rename(directory)
    except OSError:
        # Another run finished the same gallery first; its copy is identical.
        shutil.rmtree(building, ignore_errors=True)
        if not (directory / MARKER).exists():
            raise
    return directory


def _generate(params: GalleryParams, directory: Path, workers: int | None) -> None:
    specs = plan(params)
    jobs = [(spec, str(directory)) for spec in specs]
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        for job in jobs:
            _write_into(job)
    else:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_into, jobs))
    (directory / MARKER).write_text(
        json.dumps({"params": asdict(params), "files": [s.name for s in specs]})
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="emulsion gallery", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help="number of images")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="same seed, same gallery")
    parser.add_argument(
        "--root", type=Path, help="cache directory (default ~/.cache/emulsion/gallery)"
    )


def run(args: argparse.Namespace) -> int:
    if args.count < 1:
        print("emulsion gallery: --count must be at least 1", file=sys.stderr)
        return 2
    params = GalleryParams(count=args.count, seed=args.seed)
    if not (gallery_dir(params, args.root) / MARKER).exists():
        # stdout is only the directory, for scripts (`make run`); the notice goes to stderr.
        print(f"generating {params.count} demo images (once; then cached)", file=sys.stderr)
    print(ensure_gallery(params, args.root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
