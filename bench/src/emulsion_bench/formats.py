"""`make bench-formats`: bytes and encode CPU per style for JPEG, WebP and AVIF at equal
visual quality, and the processor's CPU per image with AVIF on against today.

Quality is SSIM (Wang, Bovik, Sheikh and Simoncelli 2004: 11-tap Gaussian window,
sigma 1.5, K1 0.01, K2 0.03) on BT.601 luma, implemented below in numpy (no scikit-image
in the image), between each style as the processor resizes it (before encoding) and the
decoded file. JPEG is encoded at the default profile's quality; for WebP and AVIF the
bench finds the lowest quality whose mean SSIM over every style of every image reaches
JPEG's (binary search, SSIM rises with quality), at each AVIF speed tried.

Encode CPU is `time.process_time` around the processor's own `imaging.encode` (repeated
until it has run 50 ms, so the 25x25 style is measured too). The processor's CPU per
image is `imaging.render` of the whole default profile, as today (JPEG alone) and with
every style listing `[avif, jpeg]` and `[avif, webp, jpeg]`, one process, sequentially.
The images are the demo gallery (`emulsion gallery`: photo-like, 2-24 MP, some
portraits with EXIF orientation, a few PNG and WebP).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from emulsion_bench.inputs import images_in, warm
from emulsion_cli.gallery import GalleryParams, ensure_gallery
from emulsion_contracts.formats import OutputFormat
from emulsion_contracts.messages import StyleSpec
from emulsion_contracts.profiles import DEFAULT_PROFILE
from emulsion_processor import imaging

Plane = npt.NDArray[np.float64]
RESULTS = Path(__file__).resolve().parents[2] / "results"
MIN_TIMED_SECONDS = 0.05


# -- SSIM ---------------------------------------------------------------------------------


def _gaussian(size: int = 11, sigma: float = 1.5) -> Plane:
    offsets = np.arange(size) - (size - 1) / 2
    kernel = np.exp(-(offsets**2) / (2 * sigma**2))
    return np.asarray(kernel / kernel.sum(), dtype=np.float64)


_KERNEL = _gaussian()


def _filtered(plane: Plane) -> Plane:
    """`plane` convolved with the separable Gaussian window, 'valid' region only."""
    taps = len(_KERNEL)
    height, width = plane.shape
    rows = np.zeros((height - taps + 1, width))
    for i in range(taps):
        rows += _KERNEL[i] * plane[i : height - taps + 1 + i, :]
    out = np.zeros((height - taps + 1, width - taps + 1))
    for i in range(taps):
        out += _KERNEL[i] * rows[:, i : width - taps + 1 + i]
    return out


def luma(image: Image.Image) -> Plane:
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    return np.asarray(rgb @ np.array([0.299, 0.587, 0.114]), dtype=np.float64)


def ssim(reference: Image.Image, test: Image.Image) -> float:
    """Mean SSIM of the two images' luma (Wang et al. 2004), data range 255."""
    x, y = luma(reference), luma(test)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_x, mu_y = _filtered(x), _filtered(y)
    sigma_x = _filtered(x * x) - mu_x**2
    sigma_y = _filtered(y * y) - mu_y**2
    sigma_xy = _filtered(x * y) - mu_x * mu_y
    index = ((2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (sigma_x + sigma_y + c2)
    )
    return float(index.mean())


# -- encoding -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Encoded:
    bytes: int
    cpu_seconds: float
    ssim: float


def encode_measured(
    image: Image.Image, output_format: OutputFormat, quality: int, speed: int | None = None
) -> Encoded:
    options = imaging.encoder_options(output_format, quality)
    if speed is not None:
        options["speed"] = speed
    pil_format = {"jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF"}[output_format]
    source = image
    if output_format == "jpeg" and image.mode == "RGBA":
        source = image.convert("RGB")
    runs, began = 0, time.process_time()
    while True:
        buffer = io.BytesIO()
        source.save(buffer, pil_format, **options)
        runs += 1
        spent = time.process_time() - began
        if spent >= MIN_TIMED_SECONDS:
            break
    with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
        score = ssim(source, decoded)
    return Encoded(len(buffer.getvalue()), spent / runs, score)


def styled_frames(path: Path, styles: tuple[StyleSpec, ...]) -> dict[str, Image.Image]:
    """Each style of `path` as the processor makes it, before encoding."""
    image, _ = imaging.open_checked(path, imaging.PILLOW_MAX_PIXELS, 300)
    with image:
        width, height = imaging.oriented_size(image)
        scale = max(imaging.required_scale(style, width, height) for style in styles)
        base = imaging.normalise(imaging.load_reduced(image, scale))
        return {
            style.name: frame.copy()
            for style, frame in imaging.cascade(base, styles, width, height)
        }


def mean_ssim(
    frames: list[dict[str, Image.Image]],
    output_format: OutputFormat,
    quality: int,
    speed: int | None,
) -> float:
    return statistics.fmean(
        encode_quick_ssim(frame, output_format, quality, speed)
        for styles in frames
        for frame in styles.values()
    )


def encode_quick_ssim(
    image: Image.Image, output_format: OutputFormat, quality: int, speed: int | None
) -> float:
    options = imaging.encoder_options(output_format, quality)
    if speed is not None:
        options["speed"] = speed
    buffer = io.BytesIO()
    image.save(buffer, {"webp": "WEBP", "avif": "AVIF", "jpeg": "JPEG"}[output_format], **options)
    with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
        return ssim(image, decoded)


def equal_quality(
    frames: list[dict[str, Image.Image]],
    output_format: OutputFormat,
    target: float,
    speed: int | None = None,
) -> int:
    """The lowest quality whose mean SSIM reaches `target` (binary search)."""
    low, high = 1, 100
    while low < high:
        middle = (low + high) // 2
        if mean_ssim(frames, output_format, middle, speed) >= target:
            high = middle
        else:
            low = middle + 1
    return low


# -- the processor's CPU per image ------------------------------------------------------------


def render_cpu(sources: list[Path], styles: tuple[StyleSpec, ...], avif_speed: int) -> float:
    """Mean CPU seconds of `imaging.render` per image with `styles`."""
    # The processor's encoder reads its module's AVIF_SPEED: the bench tries each speed.
    original = getattr(imaging, "AVIF_SPEED")  # noqa: B009
    setattr(imaging, "AVIF_SPEED", avif_speed)  # noqa: B010
    out_root = Path(tempfile.mkdtemp(prefix="emulsion-formats-"))
    try:
        spent = []
        for index, source in enumerate(sources):
            out_dir = out_root / str(index)
            out_dir.mkdir()
            began = time.process_time()
            imaging.render(
                imaging.RenderJob(
                    source=source,
                    out_dir=out_dir,
                    styles=styles,
                    format=DEFAULT_PROFILE.format,
                    quality=DEFAULT_PROFILE.quality,
                )
            )
            spent.append(time.process_time() - began)
        return statistics.fmean(spent)
    finally:
        setattr(imaging, "AVIF_SPEED", original)  # noqa: B010
        shutil.rmtree(out_root, ignore_errors=True)


def with_formats(
    formats: tuple[OutputFormat, ...], qualities: dict[OutputFormat, int]
) -> tuple[StyleSpec, ...]:
    return tuple(
        style.model_copy(update={"formats": formats, "qualities": qualities or None})
        for style in DEFAULT_PROFILE.styles
    )


# -- the run --------------------------------------------------------------------------------


def run(count: int, speeds: list[int], label: str) -> dict[str, Any]:
    gallery = ensure_gallery(GalleryParams())
    sources = images_in(gallery)[:count]
    warm(sources)
    styles = DEFAULT_PROFILE.styles
    frames = [styled_frames(source, styles) for source in sources]
    jpeg_quality = DEFAULT_PROFILE.quality
    target = mean_ssim(frames, "jpeg", jpeg_quality, None)
    print(f"{len(sources)} images; JPEG q{jpeg_quality} mean SSIM {target:.4f}", flush=True)
    webp_quality = equal_quality(frames, "webp", target)
    print(f"WebP: q{webp_quality} reaches it", flush=True)
    avif = {}
    for speed in speeds:
        quality = equal_quality(frames, "avif", target, speed)
        avif[speed] = quality
        print(f"AVIF speed {speed}: q{quality} reaches it", flush=True)

    def per_style(
        output_format: OutputFormat, quality: int, speed: int | None
    ) -> dict[str, dict[str, float]]:
        table = {}
        for style in styles:
            measured = [
                encode_measured(frame[style.name], output_format, quality, speed)
                for frame in frames
            ]
            table[style.name] = {
                "bytes": statistics.fmean(m.bytes for m in measured),
                "cpu_ms": 1000 * statistics.fmean(m.cpu_seconds for m in measured),
                "ssim": statistics.fmean(m.ssim for m in measured),
            }
        return table

    encodings: dict[str, dict[str, dict[str, float]]] = {
        f"jpeg q{jpeg_quality}": per_style("jpeg", jpeg_quality, None),
        f"webp q{webp_quality}": per_style("webp", webp_quality, None),
    }
    for speed, quality in avif.items():
        encodings[f"avif q{quality} speed {speed}"] = per_style("avif", quality, speed)

    today = render_cpu(sources, styles, max(speeds))
    processor: dict[str, float] = {"jpeg (today)": today}
    for speed, quality in avif.items():
        processor[f"avif+jpeg, speed {speed}"] = render_cpu(
            sources, with_formats(("avif", "jpeg"), {"avif": quality}), speed
        )
        processor[f"avif+webp+jpeg, speed {speed}"] = render_cpu(
            sources,
            with_formats(("avif", "webp", "jpeg"), {"avif": quality, "webp": webp_quality}),
            speed,
        )
        print(f"render CPU per image at speed {speed}: done", flush=True)
    return {
        "label": label,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "images": [source.name for source in sources],
        "ssim": "numpy SSIM (Wang et al. 2004) on luma, emulsion_bench.formats.ssim",
        "jpeg_ssim": target,
        "equal_quality": {"jpeg": jpeg_quality, "webp": webp_quality, "avif": avif},
        "encodings": encodings,
        "processor_cpu_per_image_s": processor,
    }


def report(result: dict[str, Any]) -> str:
    lines = [
        f"# Output formats at equal SSIM ({result['date']})",
        "",
        f"{len(result['images'])} demo-gallery images, the default profile's styles; "
        f"quality measured as {result['ssim']}. JPEG q{result['equal_quality']['jpeg']} "
        f"has mean SSIM {result['jpeg_ssim']:.4f}; each other setting is the lowest "
        "quality that reaches it.",
        "",
        "| encoding | style | bytes | encode CPU ms | SSIM |",
        "|---|---|---:|---:|---:|",
    ]
    for encoding, styles in result["encodings"].items():
        for style, row in styles.items():
            lines.append(
                f"| {encoding} | {style} | {row['bytes']:,.0f} | {row['cpu_ms']:.2f} "
                f"| {row['ssim']:.4f} |"
            )
    lines += [
        "",
        "| processor render, default profile | CPU s per image | vs today |",
        "|---|---:|---:|",
    ]
    today = result["processor_cpu_per_image_s"]["jpeg (today)"]
    for name, seconds in result["processor_cpu_per_image_s"].items():
        lines.append(f"| {name} | {seconds:.3f} | {seconds / today:.2f}x |")
    return "\n".join(lines) + "\n"


def main(
    argv: list[str] | None = None, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> int:
    parser = argparse.ArgumentParser(prog="make bench-formats", description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=12, help="demo-gallery images to use")
    parser.add_argument(
        "--avif-speeds", default="6,8,10", help="libavif speeds to try (0 slowest .. 10 fastest)"
    )
    parser.add_argument("--label", default="formats")
    arguments = parser.parse_args(argv)
    speeds = [int(speed) for speed in arguments.avif_speeds.split(",")]
    result = run(arguments.images, speeds, arguments.label)
    text = report(result)
    print(text)
    stem = RESULTS / f"{clock().date().isoformat()}-{arguments.label}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(text)
    print(f"written: {stem}.md, {stem}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
