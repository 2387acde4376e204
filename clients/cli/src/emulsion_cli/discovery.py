"""Finding the images under a directory: by extension, confirmed by magic bytes.

The extension is the cheap first filter; the magic bytes keep a renamed text file or a
truncated download from being uploaded at all (the processor would refuse it anyway,
but only after a round trip through the whole pipeline).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

# What the processor's format allow-list accepts (JPEG, PNG, WebP, GIF).
EXTENSIONS: Final[dict[str, str]] = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".jpe": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".gif": "image/gif",
}
SNIFF_BYTES: Final = 12
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


@dataclass(frozen=True)
class Discovery:
    images: list[ImageFile]
    skipped: list[Skipped]

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
    return None


def content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _candidates(root: Path) -> Iterator[Path]:
    """Regular files under root in a stable order; hidden entries and symlinks are skipped
    (a symlinked directory can loop, and a link can point outside what the user chose)."""
    for directory, subdirectories, files in os.walk(root, followlinks=False):
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(directory) / name


def examine(path: Path, root: Path) -> ImageFile | Skipped:
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
        return Skipped(relative, "content is not a JPEG, PNG, WebP or GIF image")
    # The bytes decide the type: a PNG named .jpg is still a PNG.
    return ImageFile(path, relative, size, actual, content_hash(path))


def discover(root: Path) -> Discovery:
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a directory")
    images: list[ImageFile] = []
    skipped: list[Skipped] = []
    for path in _candidates(root):
        found = examine(path, root)
        if isinstance(found, ImageFile):
            images.append(found)
        else:
            skipped.append(found)
    return Discovery(images, skipped)
