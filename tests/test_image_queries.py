"""Engine additions the server relies on: images from bytes, search by an uploaded image,
looking a file up by its id, and text-only query parsing."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from clipseek.errors import ImageReadError, QueryError
from clipseek.photos.imaging import open_image, open_image_bytes
from clipseek.search.query import parse_query
from clipseek.store import path_id


def _png_with_alpha() -> bytes:
    from PIL import Image

    im = Image.new("RGBA", (40, 30), (200, 30, 30, 0))
    im.paste((10, 120, 240, 255), (5, 5, 20, 20))
    out = io.BytesIO()
    im.save(out, "PNG")
    return out.getvalue()


def test_bytes_decode_exactly_like_the_file(tmp_path: Path):
    data = _png_with_alpha()
    path = tmp_path / "a.png"
    path.write_bytes(data)
    from_bytes = open_image_bytes(data)
    from_file = open_image(str(path))
    assert from_bytes.mode == from_file.mode == "RGB"
    assert from_bytes.tobytes() == from_file.tobytes()
    assert from_bytes.getpixel((0, 0)) == (255, 255, 255)  # transparency over white
    assert from_bytes.info["clipseek_size"] == (40, 30)


def _truncated_jpeg() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.effect_noise((64, 64), 80).convert("RGB").save(out, "JPEG")
    return out.getvalue()[: len(out.getvalue()) // 2]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file (0 bytes)"),
        (b"hello, this is text\n", "a text file, not an image"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "an XML/SVG file, not a bitmap image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 30, "not a recognised image format"),
        (_truncated_jpeg(), "truncated"),
    ],
)
def test_unreadable_bytes_name_the_label(data: bytes, reason: str):
    with pytest.raises(ImageReadError) as err:
        open_image_bytes(data, label="upload.png")
    assert err.value.path == "upload.png"
    assert reason in err.value.reason


def test_megapixel_limit_applies_to_bytes():
    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (1500, 1000)).save(out, "PNG")
    with pytest.raises(ImageReadError, match=r"1\.5 MP|2 MP|above the 1 MP limit"):
        open_image_bytes(out.getvalue(), max_megapixels=1.0)


def test_text_only_parsing_never_touches_files(photos: Path):
    existing = str(photos / "beach.jpg")
    assert parse_query([existing]).terms[0].kind == "image"
    query = parse_query([f"{existing} + 2:~/x.png - a dog"], allow_images=False)
    assert [(t.kind, t.value, t.weight) for t in query.terms] == [
        ("text", existing, 1.0),
        ("text", "~/x.png", 2.0),
        ("text", "a dog", -1.0),
    ]


def test_search_by_uploaded_bytes_and_lookup_by_id(engine, photos: Path):
    from PIL import Image

    engine.index([str(photos)])
    target = photos / "forest.jpeg"
    data = target.read_bytes()

    stored = engine.open_index().get([path_id(str(target))])[path_id(str(target))][0]
    from_bytes = engine.embed_image(data)
    with Image.open(target) as im:
        from_pil = engine.embed_image(im.copy())
    assert float(np.dot(from_bytes, stored)) > 0.999
    assert float(np.dot(from_pil, stored)) > 0.999

    response = engine.search_image(data, 3, label="the uploaded image forest.jpeg")
    assert response.results[0].path == str(target)
    assert response.results[0].score > 0.99
    assert len(response.results) == 3
    assert response.query == "the uploaded image forest.jpeg"

    inside = engine.search_image(data, 20, in_dir=str(photos / "sub"))
    assert inside.results and all(r.path.startswith(str(photos / "sub")) for r in inside.results)

    entry = engine.image_entry(path_id(str(target)))
    assert entry is not None and entry.path == str(target)
    assert entry.size == target.stat().st_size
    assert engine.image_entry("0" * 40) is None

    with pytest.raises(QueryError, match=r"^The upload x\.gif cannot be used: a text file"):
        engine.search_image(b"not an image at all", 3, label="the upload x.gif")
    with pytest.raises(QueryError, match="at least 1"):
        engine.search_image(data, 0)
