"""File discovery: images by extension confirmed by magic bytes; everything else skipped
with a reason; a stable order; nothing outside the chosen directory."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from PIL import Image

from emulsion_cli.discovery import ImageFile, Skipped, discover, sniff_content_type
from tests import phone_photos as photos


def image_bytes(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buffer, fmt)
    return buffer.getvalue()


def test_finds_images_by_extension_and_content(tmp_path: Path) -> None:
    (tmp_path / "b.jpg").write_bytes(image_bytes("JPEG"))
    (tmp_path / "a.PNG").write_bytes(image_bytes("PNG"))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.webp").write_bytes(image_bytes("WEBP"))
    (tmp_path / "sub" / "d.gif").write_bytes(image_bytes("GIF"))

    found = discover(tmp_path)

    assert [(i.relative, i.content_type) for i in found.images] == [
        ("a.PNG", "image/png"),
        ("b.jpg", "image/jpeg"),
        ("sub/c.webp", "image/webp"),
        ("sub/d.gif", "image/gif"),
    ]
    assert found.skipped == []
    assert found.total_bytes == sum(i.size for i in found.images)
    first = found.images[0]
    assert first.sha256 == hashlib.sha256(first.path.read_bytes()).hexdigest()


def test_skips_non_images_with_a_reason(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "fake.jpg").write_text("not really a jpeg")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "photo.jpg").write_bytes(image_bytes("JPEG"))

    found = discover(tmp_path)

    assert [i.relative for i in found.images] == ["photo.jpg"]
    reasons = {s.relative: s.reason for s in found.skipped}
    assert reasons["notes.txt"] == "not an image extension"
    assert "not a JPEG, PNG, WebP, GIF, AVIF or HEIC" in reasons["fake.jpg"]
    assert "not a JPEG" in reasons["empty.png"]


def test_phone_photos_are_found_as_heic_heif_and_avif(tmp_path: Path) -> None:
    picture = Image.new("RGB", (64, 48), (200, 10, 10))
    (tmp_path / "IMG_0001.HEIC").write_bytes(photos.heic(picture, orientation=6))
    (tmp_path / "IMG_0002.avif").write_bytes(photos.avif(picture))
    (tmp_path / "DSCF0003.HIF").write_bytes(photos.heic(picture))
    (tmp_path / "burst.heif").write_bytes(photos.multi_image_heic([picture, picture], 1))
    (tmp_path / "clip.heic").write_bytes(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2")

    found = discover(tmp_path)

    # The bytes decide: the .heif and .HIF files hold HEVC, so they are HEIC.
    assert [(i.relative, i.content_type) for i in found.images] == [
        ("DSCF0003.HIF", "image/heic"),
        ("IMG_0001.HEIC", "image/heic"),
        ("IMG_0002.avif", "image/avif"),
        ("burst.heif", "image/heic"),
    ]
    assert [s.relative for s in found.skipped] == ["clip.heic"]


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = b"ftyp" + major + b"\x00\x00\x00\x00" + b"".join(compatible)
    return (len(body) + 4).to_bytes(4, "big") + body + b"\x00\x00\x00\x08meta"


def test_the_ftyp_brands_name_the_type() -> None:
    assert sniff_content_type(ftyp(b"heic", b"mif1", b"heic")) == "image/heic"
    assert sniff_content_type(ftyp(b"avif", b"mif1", b"miaf")) == "image/avif"
    assert sniff_content_type(ftyp(b"mif1", b"mif1", b"avif")) == "image/avif"
    assert sniff_content_type(ftyp(b"mif1", b"mif1", b"heic")) == "image/heic"
    assert sniff_content_type(ftyp(b"mif1", b"mif1")) == "image/heif"
    # Brands past the box's own end belong to the next box, not to this one.
    assert sniff_content_type(ftyp(b"mif1") + b"avif") == "image/heif"
    for other in (b"isom", b"mp42", b"qt  ", b"jxl ", b"crx "):
        assert sniff_content_type(ftyp(other, other)) is None


def test_the_bytes_decide_the_type(tmp_path: Path) -> None:
    (tmp_path / "really-a-png.jpg").write_bytes(image_bytes("PNG"))
    (found,) = discover(tmp_path).images
    assert found.content_type == "image/png"


def test_hidden_entries_and_symlinks_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(image_bytes("JPEG"))
    root = tmp_path / "root"
    root.mkdir()
    (root / ".hidden.jpg").write_bytes(image_bytes("JPEG"))
    (root / ".cache").mkdir()
    (root / ".cache" / "x.jpg").write_bytes(image_bytes("JPEG"))
    (root / "linked-dir").symlink_to(outside, target_is_directory=True)
    (root / "linked.jpg").symlink_to(outside / "secret.jpg")
    (root / "real.jpg").write_bytes(image_bytes("JPEG"))

    found = discover(root)

    assert [i.relative for i in found.images] == ["real.jpg"]
    assert found.skipped == [Skipped("linked.jpg", "not a regular file")]


def test_upload_name_flattens_the_relative_path() -> None:
    image = ImageFile(Path("/x/a/b/IMG 1.jpg"), "a/b/IMG 1.jpg", 1, "image/jpeg", "0" * 64)
    assert image.upload_name == "a-b-IMG 1.jpg"


def test_sniff_rejects_lookalikes() -> None:
    assert sniff_content_type(b"RIFF\0\0\0\0WAVE") is None
    assert sniff_content_type(b"\xff\xd8") is None
    assert sniff_content_type(b"GIF89a....") == "image/gif"


def test_hostile_names_are_found_and_shown_escaped(tmp_path: Path) -> None:
    from emulsion_cli.output import printable

    names = ["line\nbreak.jpg", "[red]markup.jpg", "bell\x07.jpg", "Ünïcode façade.jpg"]
    for name in names:
        (tmp_path / name).write_bytes(image_bytes("JPEG"))

    found = discover(tmp_path)

    assert sorted(i.relative for i in found.images) == sorted(names)
    assert printable("line\nbreak.jpg") == "line\\nbreak.jpg"
    assert printable("bell\x07.jpg") == "bell\\x07.jpg"
    assert printable("Ünïcode façade.jpg") == "Ünïcode façade.jpg"
    assert printable("bad\udcff.jpg") == "bad\\udcff.jpg"
