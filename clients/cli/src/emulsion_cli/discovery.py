"""Finding the images under a directory: by extension, confirmed by magic bytes.

The extension is the cheap first filter; the magic bytes keep a renamed text file or a
truncated download from being uploaded at all (the processor would refuse it anyway,
but only after a round trip through the whole pipeline).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from emulsion_cli.patterns import Selection

# What the processor's format allow-list accepts (JPEG, PNG, WebP, GIF, AVIF, HEIC/HEIF).
EXTENSIONS: Final[dict[str, str]] = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".jpe": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".avif": "image/avif",
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".hif": "image/heif",  # Canon's and Fujifilm's name for HEIF
}
# Enough for an ISO media `ftyp` box with a few compatible brands after its major brand.
SNIFF_BYTES: Final = 64
# `ftyp` brands: AV1 (AVIF), HEVC (HEIC), and the bare HEIF container brands, which say
# what the file holds only through the compatible brands that follow.
_AVIF_BRANDS: Final = frozenset({b"avif", b"avis"})
_HEIC_BRANDS: Final = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"}
)
_HEIF_BRANDS: Final = frozenset({b"mif1", b"msf1"})
HASH_CHUNK: Final = 1024 * 1024


@dataclass(frozen=True)
class ImageFile:
    path: Path
    # Relative to the ingested directory, with '/' separators: what the user recognises.
    relative: str
    size: int
    content_type: str
    sha256: str

    @property
    def upload_name(self) -> str:
        """The filename sent to the API: the relative path flattened, so `a/IMG_1.jpg` and
        `b/IMG_1.jpg` become different assets. The API names the asset after it (Unicode
        kept), so '\\' (a separator to the API, a plain character in a POSIX name) is
        flattened too."""
        return self.relative.replace("/", "-").replace("\\", "-")


@dataclass(frozen=True)
class Skipped:
    relative: str
    reason: str


class DiscoveryStopped(Exception):
    """The run is stopping (Ctrl-C, SIGTERM): the walk ends between two files."""


@dataclass(frozen=True)
class Discovery:
    images: list[ImageFile]
    skipped: list[Skipped]
    # Files left out by --include/--exclude (not listed: the user chose them); files in
    # an excluded directory are not counted, as the directory is not even walked.
    excluded: int = 0

    @property
    def total_bytes(self) -> int:
        return sum(image.size for image in self.images)


def sniff_content_type(head: bytes) -> str | None:
    """The image type the first bytes announce, or None for anything else."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return _sniff_iso_media(head)


def _sniff_iso_media(head: bytes) -> str | None:
    """AVIF, HEIC or HEIF from an ISO media `ftyp` box (the same box starts MP4 video,
    JPEG XL and camera raws, which are not images Emulsion takes)."""
    if len(head) < 16 or head[4:8] != b"ftyp":
        return None
    size = int.from_bytes(head[:4], "big")
    major = head[8:12]
    end = min(len(head), size) if size >= 16 else 16
    compatible = {head[i : i + 4] for i in range(16, end - 3, 4)}
    if major in _AVIF_BRANDS:
        return "image/avif"
    if major in _HEIC_BRANDS:
        return "image/heic"
    if major in _HEIF_BRANDS:
        if compatible & _AVIF_BRANDS:
            return "image/avif"
        if compatible & _HEIC_BRANDS:
            return "image/heic"
        return "image/heif"
    return None


def content_hash(path: Path, stop: threading.Event | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(HASH_CHUNK):
            if stop is not None and stop.is_set():
                raise DiscoveryStopped
            digest.update(chunk)
    return digest.hexdigest()


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _candidates(root: Path, selection: Selection) -> Iterator[tuple[Path, bool]]:
    """Regular files under root in a stable order, each with whether the selection takes
    it; hidden entries and symlinks are skipped (a symlinked directory can loop, and a
    link can point outside what the user chose), and so are excluded directories."""
    for directory, subdirectories, files in os.walk(root, followlinks=False):
        subdirectories[:] = sorted(
            d
            for d in subdirectories
            if not d.startswith(".") and not selection.prunes(_relative(Path(directory) / d, root))
        )
        for name in sorted(files):
            if not name.startswith("."):
                path = Path(directory) / name
                yield path, selection.selects(_relative(path, root))


def examine(path: Path, root: Path, stop: threading.Event | None = None) -> ImageFile | Skipped:
    relative = path.relative_to(root).as_posix()
    if path.is_symlink() or not path.is_file():
        return Skipped(relative, "not a regular file")
    expected = EXTENSIONS.get(path.suffix.lower())
    if expected is None:
        return Skipped(relative, "not an image extension")
    try:
        with path.open("rb") as stream:
            head = stream.read(SNIFF_BYTES)
        size = path.stat().st_size
    except OSError as error:
        return Skipped(relative, f"unreadable: {error.strerror or error}")
    actual = sniff_content_type(head)
    if actual is None:
        return Skipped(relative, "content is not a JPEG, PNG, WebP, GIF, AVIF or HEIC image")
    # The bytes decide the type: a PNG named .jpg is still a PNG.
    return ImageFile(path, relative, size, actual, content_hash(path, stop))


def discover(
    root: Path, selection: Selection | None = None, stop: threading.Event | None = None
) -> Discovery:
    """The images under root that the selection takes; `stop`, once set, ends the walk
    with DiscoveryStopped (it runs in a thread, which cancellation cannot reach)."""
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a directory")
    selection = selection or Selection()
    images: list[ImageFile] = []
    skipped: list[Skipped] = []
    excluded = 0
    for path, selected in _candidates(root, selection):
        if stop is not None and stop.is_set():
            raise DiscoveryStopped
        if not selected:
            excluded += 1
            continue
        found = examine(path, root, stop)
        if isinstance(found, ImageFile):
            images.append(found)
        else:
            skipped.append(found)
    return Discovery(images, skipped, excluded)
