"""Pictures made for tests: small photo-like images, awkward files, a library with known
EXIF and one with planted near-duplicates."""

from __future__ import annotations

import random
import struct
import zlib
from pathlib import Path


def make_photo(
    path: Path,
    size: tuple[int, int] = (96, 64),
    seed: int = 0,
    fmt: str | None = None,
    *,
    shapes: int = 6,
    min_extent: int = 5,
) -> Path:
    """A small photo-like picture: a plain background and ``shapes`` ellipses and
    rectangles at least ``min_extent`` pixels across, varying by seed."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    w, h = size
    img = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(shapes):
        x0, y0 = rng.randrange(w), rng.randrange(h)
        box = [x0, y0, x0 + rng.randrange(min_extent, w), y0 + rng.randrange(min_extent, h)]
        fill = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt)
    return path


def draw_photo(path: Path, size: tuple[int, int], seed: int) -> Path:
    """The served pictures' variant of :func:`make_photo` (fewer, larger shapes): the
    server tests' expectations were written against these exact pixels."""
    return make_photo(path, size, seed, shapes=5, min_extent=8)


# --------------------------------------------------------------------------- awkward files


def noise_png(path: Path, size: tuple[int, int] = (120, 90), seed: int = 0) -> Path:
    """A PNG that does not compress, so cutting it in half really loses pixel data."""
    from PIL import Image

    data = random.Random(seed).randbytes(size[0] * size[1] * 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.frombytes("RGB", size, data).save(path)
    return path


def truncate_half(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def png_bomb(path: Path, width: int = 40_000, height: int = 40_000) -> Path:
    """A 100-byte PNG whose header declares ``width``×``height`` RGB pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )
    return path


# --------------------------------------------------------------------------- libraries

#: (file, caption, EXIF date, camera make, camera model): scenes the shipped shapes model
#: tells apart, with the headers the date and camera filters read.
EXIF_LIBRARY = [
    ("beach-1.jpg", "a yellow circle", "2024:07:14 10:00:00", "Google", "Pixel 7"),
    ("beach-2.jpg", "a yellow circle", "2024:08:02 16:20:00", "Google", "Pixel 8 Pro"),
    ("winter.jpg", "a yellow circle", "2024:01:20 09:00:00", "Canon", "Canon EOS R5"),
    ("old.jpg", "a yellow circle", "2019:05:05 05:05:05", "Canon", "Canon EOS R5"),
    ("blue.jpg", "a blue square", "2024:07:20 12:00:00", "Google", "Pixel 7"),
    ("no-exif.jpg", "a yellow circle", None, None, None),
]


def write_exif_library(folder: Path) -> None:
    """The pictures of :data:`EXIF_LIBRARY` in ``folder``."""
    from PIL import Image

    from clipseek.testing import make_scene

    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, caption, date, make, model) in enumerate(EXIF_LIBRARY):
        picture = make_scene(caption, size=(160, 120), seed=500 + i)
        path = folder / name
        picture.save(path, "JPEG", quality=92)
        if date or make:
            exif = Image.Exif()
            if make:
                exif[0x010F], exif[0x0110] = make, model
            if date:
                exif.get_ifd(0x8769)[0x9003] = date
            picture.save(path, "JPEG", quality=92, exif=exif)


def plant_duplicates(folder: Path) -> tuple[list[set[str]], list[str]]:
    """Originals with a resized, a re-encoded and a cropped copy each, and unrelated
    pictures: (the groups of names that are near-duplicates, the names that are not)."""
    from PIL import Image

    from clipseek.testing import make_scene

    folder.mkdir(parents=True, exist_ok=True)
    groups: list[set[str]] = []
    captions = ["a red circle", "a blue star", "a green triangle", "a purple heart"]
    for i, caption in enumerate(captions):
        base = make_scene(caption, size=(320, 240), seed=900 + i)
        names = {f"orig-{i}.jpg", f"small-{i}.jpg", f"requal-{i}.jpg", f"crop-{i}.jpg"}
        base.save(folder / f"orig-{i}.jpg", quality=95)
        base.resize((160, 120), Image.LANCZOS).save(folder / f"small-{i}.jpg", quality=90)
        base.save(folder / f"requal-{i}.jpg", quality=55)
        base.crop((12, 9, 308, 231)).save(folder / f"crop-{i}.jpg", quality=90)
        groups.append(names)
    singles = []
    rng = random.Random(7)
    for j, caption in enumerate(["a yellow square", "an orange cross", "a white moon"]):
        name = f"single-{j}.jpg"
        make_scene(caption, size=(320, 240), seed=rng.randrange(10_000)).save(folder / name)
        singles.append(name)
    return groups, singles
