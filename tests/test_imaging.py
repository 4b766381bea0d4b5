from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipseek.errors import ImageReadError
from clipseek.photos.imaging import open_image, to_rgb
from tests.support.pictures import make_photo


def test_exif_orientation_6_embeds_like_the_image_rotated_by_hand(
    tmp_path: Path, loaded_tiny_model
) -> None:
    import torch

    upright = Image.open(make_photo(tmp_path / "upright.png", size=(80, 120), seed=3)).convert(
        "RGB"
    )
    # A camera held sideways stores the pixels rotated and says so in EXIF tag 0x0112.
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "rotated.png", exif=exif.tobytes())
    upright.save(tmp_path / "reference.png")

    read = open_image(str(tmp_path / "rotated.png"))
    assert read.size == upright.size
    assert np.array_equal(np.asarray(read), np.asarray(upright))
    vectors = loaded_tiny_model.encode_images(
        torch.stack(
            [
                loaded_tiny_model.transform(read),
                loaded_tiny_model.transform(open_image(str(tmp_path / "reference.png"))),
            ]
        )
    )
    assert float(vectors[0] @ vectors[1]) == pytest.approx(1.0, abs=1e-5)
    assert read.info["clipseek_size"] == (80, 120)


def test_alpha_is_composited_on_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    rgba.save(tmp_path / "a.png")
    img = open_image(str(tmp_path / "a.png"))
    assert img.mode == "RGB"
    assert img.getpixel((1, 1)) == (255, 255, 255)
    assert img.getpixel((0, 0)) == (0, 0, 255)


def test_palette_with_transparency(tmp_path: Path) -> None:
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    pal.putpixel((0, 0), 1)
    pal.save(tmp_path / "p.png", transparency=0)
    img = open_image(str(tmp_path / "p.png"))
    assert img.getpixel((0, 0)) == (200, 10, 10)
    assert img.getpixel((2, 2)) == (255, 255, 255)


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    arr = np.array([[0, 32768], [65535, 1000]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "g16.png")
    img = open_image(str(tmp_path / "g16.png"))
    assert img.mode == "RGB"
    assert img.getpixel((0, 0)) == (0, 0, 0)
    assert img.getpixel((0, 1)) == (255, 255, 255)
    assert 126 <= img.getpixel((1, 0))[0] <= 129


def test_cmyk_jpeg(tmp_path: Path) -> None:
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    img = open_image(str(tmp_path / "c.jpg"))
    r, g, b = img.getpixel((4, 4))
    assert img.mode == "RGB" and r > 200 and g < 60 and b < 60


def test_animated_gif_uses_the_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (6, 6), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    img = open_image(str(tmp_path / "anim.gif"))
    r, g, b = img.getpixel((3, 3))
    assert r > 200 and g < 50 and b < 50


def test_megapixel_limit_refuses_before_decoding(tmp_path: Path) -> None:
    make_photo(tmp_path / "big.png", size=(2000, 1500))
    with pytest.raises(ImageReadError, match=r"2000×1500 \(3 MP\), above the 1 MP limit"):
        open_image(str(tmp_path / "big.png"), max_megapixels=1)
    assert open_image(str(tmp_path / "big.png"), max_megapixels=4).size == (2000, 1500)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file (0 bytes)"),
        (b"hello, I am just text\n", "a text file, not an image"),
        (
            b"<!DOCTYPE html><html><body>404</body></html>",
            "an HTML page saved with an image extension",
        ),
        (bytes(range(256)) * 4, "not a recognised image format"),
    ],
)
def test_unreadable_files_have_one_line_reasons(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageReadError) as err:
        open_image(str(path))
    assert err.value.reason == reason
    assert err.value.path == str(path)


def test_truncated_jpeg_is_reported(tmp_path: Path) -> None:
    buf = io.BytesIO()
    make_photo(tmp_path / "ok.jpg", size=(200, 150))
    data = (tmp_path / "ok.jpg").read_bytes()
    buf.write(data[: len(data) // 2])
    (tmp_path / "truncated.jpg").write_bytes(buf.getvalue())
    with pytest.raises(ImageReadError) as err:
        open_image(str(tmp_path / "truncated.jpg"))
    assert err.value.reason == "image file is truncated"


def test_missing_file_reason(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="disappeared"):
        open_image(str(tmp_path / "gone.jpg"))


def test_to_rgb_leaves_rgb_alone() -> None:
    img = Image.new("RGB", (2, 2), (1, 2, 3))
    assert to_rgb(img) is img
