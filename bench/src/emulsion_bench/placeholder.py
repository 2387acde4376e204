"""`make bench-placeholder`: what a photo's metadata and placeholder add to its render.

Every image is rendered whole (`imaging.render`: decode, the default profile's styles,
encode) in this process on one thread, as a processor's render worker does; the render
measures its own stages, and the figures are the medians of the `metadata` stage (the
Exif read into `PhotoMetadata`) and the `placeholder` stage (ThumbHash and dominant
colour from a frame the render already made), beside the whole render's process CPU.
The stages are timed by the wall clock in a single thread, so on a shared machine they
are an upper bound of their CPU. Separately, `placeholder.of` alone on a 1,600 px frame
(the largest the default profile makes), by process CPU over many calls.

Inputs: 12 MP camera-like JPEGs from fixed seeds (the processor bench's), each with a
camera's Exif block (time and offset, make, model, lens, exposure, a Unicode artist, GPS).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from emulsion_bench.processor import generate_gallery
from emulsion_contracts.profiles import DEFAULT_PROFILE
from emulsion_processor import imaging, placeholder


def camera_exif() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x0110] = "Canon EOS R5"
    exif[0x013B] = "写真家 Zoë".encode()
    exif[0x0112] = 1
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = "2026:05:04 13:14:15"
    sub[0x9011] = "+09:00"
    sub[0x829A] = IFDRational(1, 250)
    sub[0x829D] = IFDRational(28, 10)
    sub[0x8827] = 400
    sub[0x920A] = IFDRational(50, 1)
    sub[0xA434] = "RF50mm F1.8 STM"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (IFDRational(35), IFDRational(40), IFDRational(61, 2))
    gps[3], gps[4] = "E", (IFDRational(139), IFDRational(45), IFDRational(0))
    return exif.tobytes()


def with_exif(path: Path, exif: bytes) -> None:
    """`path` (a JPEG) with an APP1 Exif segment after its SOI; the image data as it was."""
    data = path.read_bytes()
    segment = b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif
    path.write_bytes(data[:2] + segment + data[2:])


def stage_ms(rendered: imaging.Rendered, name: str) -> float:
    return sum((t.end_ns - t.start_ns) / 1e6 for t in rendered.timings if t.name == name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6, help="12 MP camera-like JPEGs")
    parser.add_argument("--calls", type=int, default=200, help="calls of placeholder.of alone")
    parser.add_argument("--output", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args()
    exif = camera_exif()
    renders, metadata, placeholders = [], [], []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        images = generate_gallery(root, args.images)
        for image in images:
            with_exif(image, exif)
        out = root / "out"
        out.mkdir()
        job = imaging.RenderJob(source=images[0], out_dir=out, styles=DEFAULT_PROFILE.styles)
        imaging.render(job)  # warm-up: imports, the first decode
        for image in images:
            job = imaging.RenderJob(
                source=image, out_dir=out, styles=DEFAULT_PROFILE.styles, keep_gps=True
            )
            started = time.process_time()
            rendered = imaging.render(job)
            renders.append(1000 * (time.process_time() - started))
            metadata.append(stage_ms(rendered, "metadata"))
            placeholders.append(stage_ms(rendered, "placeholder"))
        with Image.open(images[0]) as photo:
            frame = photo.convert("RGB").resize((1600, 1200))
    started = time.process_time()
    for _ in range(args.calls):
        placeholder.of(frame)
    alone = 1000 * (time.process_time() - started) / args.calls
    figures = {
        "render_cpu_ms": statistics.median(renders),
        "metadata_ms": statistics.median(metadata),
        "placeholder_ms": statistics.median(placeholders),
        "added_ms": statistics.median(m + p for m, p in zip(metadata, placeholders, strict=True)),
        "placeholder_of_1600px_cpu_ms": alone,
    }
    print(f"{args.images} camera-like 12 MP JPEGs, default profile, one thread (medians):\n")
    print(f"  whole render, process CPU     {figures['render_cpu_ms']:8.1f} ms")
    print(f"  metadata stage (Exif read)    {figures['metadata_ms']:8.2f} ms")
    print(f"  placeholder stage             {figures['placeholder_ms']:8.2f} ms")
    print(f"  added per image               {figures['added_ms']:8.2f} ms")
    print(f"  placeholder.of, 1600 px frame {figures['placeholder_of_1600px_cpu_ms']:8.2f} ms CPU")
    if args.output:
        args.output.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
