"""`make bench-gravity`: what each crop gravity costs the processor, per image.

Every image is rendered whole (`imaging.render`: decode, the default profile's five
styles, encode) once per gravity, with the three crop styles set to that gravity, in
this process on one thread; the figure is process CPU seconds per image (not wall time:
the machine is shared). `smart` and `faces` analyse the decoded base once per image,
whatever the number of crop styles; the focal point is arithmetic only.

Inputs: 12 MP camera-like JPEGs from fixed seeds (the processor bench's), and portraits
cut from scikit-image's astronaut photograph scaled to 12 MP (a real face). Separately,
in fresh interpreters: what importing OpenCV and loading the Haar cascade costs a render
process (CPU and RSS), which a processor pays once per render process, and only when a
profile has a `faces` style.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

from PIL import Image

from emulsion_bench.processor import generate_gallery
from emulsion_contracts.messages import FocalPoint, StyleSpec
from emulsion_contracts.profiles import DEFAULT_PROFILE
from emulsion_processor import gravity, imaging

TWELVE_MP_PORTRAIT = (3024, 4032)
CASES = ("center", "smart", "faces", "focal point")


def portraits(directory: Path, count: int) -> list[Path]:
    """Tall 12 MP portraits of the astronaut, the face in the top third, a few crops."""
    path = resources.files("skimage") / "data" / "astronaut.png"
    with resources.as_file(path) as real, Image.open(real) as photo:
        astronaut = photo.convert("RGB")
    made = []
    for index in range(count):
        left = 110 + 20 * index
        cut = astronaut.crop((left, 0, left + 384, 512))
        target = directory / f"PORTRAIT_{index:02d}.jpg"
        cut.resize(TWELVE_MP_PORTRAIT, Image.Resampling.BICUBIC).save(target, quality=90)
        made.append(target)
    return made


def styles_for(case: str) -> tuple[StyleSpec, ...]:
    if case in ("center", "focal point"):
        return DEFAULT_PROFILE.styles
    return tuple(
        style.model_copy(update={"gravity": case}) if style.fit == "crop" else style
        for style in DEFAULT_PROFILE.styles
    )


def cpu_per_image(images: list[Path], case: str, out: Path) -> list[float]:
    focal = FocalPoint(x=0.3, y=0.2) if case == "focal point" else None
    seconds = []
    for image in images:
        job = imaging.RenderJob(
            source=image, out_dir=out, styles=styles_for(case), focal_point=focal
        )
        started = time.process_time()
        imaging.render(job)
        seconds.append(time.process_time() - started)
    return seconds


IMPORT_PROBE = """
import json, resource, time
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * resource.getpagesize()
import PIL.Image
from emulsion_processor import imaging
before, cpu = rss(), time.process_time()
from emulsion_processor import gravity
gravity._cascade(gravity._opencv()[0])
print(json.dumps({"cpu": time.process_time() - cpu, "rss": rss() - before}))
"""


def import_cost(runs: int) -> dict[str, float]:
    found = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", IMPORT_PROBE], check=True, capture_output=True, text=True
            ).stdout
        )
        for _ in range(runs)
    ]
    return {
        "cpu_seconds": statistics.median(f["cpu"] for f in found),
        "rss_mib": statistics.median(f["rss"] for f in found) / 2**20,
    }


def analysis_cost(images: list[Path]) -> dict[str, float]:
    """CPU of the analyses alone on each image's decoded base (ms, median)."""
    smart, faces = [], []
    for path in images:
        with Image.open(path) as image:
            image.draft("RGB", (800, 800))
            base = imaging.normalise(imaging.load_reduced(image, 0.25))
            started = time.process_time()
            gravity.detail_map(base)
            smart.append(time.process_time() - started)
            started = time.process_time()
            gravity.find_faces(base)
            faces.append(time.process_time() - started)
    return {
        "smart_ms": 1000 * statistics.median(smart),
        "faces_ms": 1000 * statistics.median(faces),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6, help="12 MP images of each kind")
    parser.add_argument("--output", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        kinds = {
            "camera-like 12 MP": generate_gallery(root, args.images),
            "portrait 12 MP (astronaut)": portraits(root, args.images),
        }
        out = root / "out"
        out.mkdir()
        # Warm-up: imports, OpenCV's cascade, the first decode.
        cpu_per_image(kinds["portrait 12 MP (astronaut)"][:1], "faces", out)
        figures: dict[str, dict[str, float]] = {}
        for kind, images in kinds.items():
            figures[kind] = {
                case: 1000 * statistics.median(cpu_per_image(images, case, out)) for case in CASES
            }
        analyses = analysis_cost(kinds["portrait 12 MP (astronaut)"])
    imports = import_cost(3)
    print("CPU per image, ms (median; one thread; decode + 5 styles + encode):\n")
    print("| images | " + " | ".join(CASES) + " |")
    print("|---|" + "---|" * len(CASES))
    for kind, row in figures.items():
        print(f"| {kind} | " + " | ".join(f"{row[c]:.0f}" for c in CASES) + " |")
    print(
        f"\nanalysis alone on the decoded base: smart {analyses['smart_ms']:.1f} ms, "
        f"faces {analyses['faces_ms']:.1f} ms"
    )
    print(
        f"OpenCV import + Haar cascade, once per render process: "
        f"{imports['cpu_seconds']:.2f} s CPU, +{imports['rss_mib']:.0f} MiB RSS"
    )
    if args.output:
        args.output.write_text(
            json.dumps({"cpu_ms": figures, "analysis": analyses, "import": imports}, indent=2)
        )


if __name__ == "__main__":
    main()
