"""Whatever is in a photo folder, indexing keeps going and says what it skipped and why.

Complements test_imaging/test_indexer/test_scanner: these tests put every awkward case
of docs/RELIABILITY.md into real folders and run the whole indexer over them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipseek.engine import Engine
from clipseek.errors import ImageReadError
from clipseek.indexing import pipeline as ix
from clipseek.indexing.options import IndexOptions
from clipseek.indexing.scanner import scan
from clipseek.photos import imaging
from clipseek.photos.imaging import HEIC_MISSING, open_image
from clipseek.store import path_id
from tests.support.files import Denier
from tests.support.pictures import make_photo, noise_png, png_bomb, truncate_half


def stored(engine: Engine) -> set[str]:
    return {e.path for e in engine.open_index().entries().values()}


def reasons(summary: ix.IndexSummary, root: Path) -> dict[str, str]:
    return {os.path.relpath(f.path, root): f.reason for f in summary.failed}


# --------------------------------------------------------------------------- skipped


def test_bad_files_are_skipped_with_one_line_reasons_and_indexing_continues(
    engine: Engine, tmp_path: Path, denier: Denier, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "drive"
    good = {make_photo(root / f"good{i}.jpg", seed=i) for i in range(3)}
    good.add(make_photo(root / "private-not" / "kept.png", seed=7))
    (root / "zero.jpg").write_bytes(b"")
    (root / "saved-page.jpg").write_text("<!DOCTYPE html>\n<html><body>Not found</body></html>")
    truncate_half(noise_png(root / "truncated.png"))
    truncate_half(make_photo(root / "truncated.jpg", size=(300, 200)))
    (root / "random.png").write_bytes(np.random.default_rng(0).bytes(4096))
    bomb = png_bomb(root / "bomb.png")
    (root / "dangling.jpg").symlink_to(root / "nowhere.jpg")
    denier.deny(make_photo(root / "locked.jpg", seed=11))
    private = root / "private"
    make_photo(private / "secret.jpg", seed=12)
    denier.deny(private)
    make_photo(root / "vanishes.jpg", seed=13)
    make_photo(root / "swapped.png", seed=14)

    # A bomb must be refused from its header alone: no decoder may touch its pixels.
    from PIL import ImageFile

    decoded: list[str] = []
    real_load = ImageFile.ImageFile.load

    def spy_load(self):
        decoded.append(getattr(self, "filename", ""))
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy_load)

    def between_scan_and_decode(event: object) -> None:
        if isinstance(event, ix.PlanReady):
            (root / "vanishes.jpg").unlink()
            (root / "swapped.png").write_text("the photo was replaced by a note")

    summary = engine.index([root], on_event=between_scan_and_decode)

    assert reasons(summary, root) == {
        "zero.jpg": "empty file (0 bytes)",
        "saved-page.jpg": "an HTML page saved with an image extension",
        "truncated.png": "image file is truncated",
        "truncated.jpg": "image file is truncated",
        "random.png": "not a recognised image format",
        "bomb.png": "image is 40000×40000 (1600 MP), above the 200 MP limit; "
        "raise it with --max-megapixels",
        "dangling.jpg": "broken symbolic link",
        "locked.jpg": "permission denied",
        "private": "permission denied",
        "vanishes.jpg": "file disappeared before it could be read",
        "swapped.png": "a text file, not an image",
    }
    assert all("\n" not in f.reason for f in summary.failed)
    assert str(bomb) not in decoded
    assert summary.new == len(good)
    assert stored(engine) == {str(p) for p in good}


def test_unreadable_folder_keeps_what_the_index_knew(
    engine: Engine, tmp_path: Path, denier: Denier
) -> None:
    """A share that refuses us today has not lost its photos: keep them; a deleted one goes."""
    root = tmp_path / "nas"
    for i in range(2):
        make_photo(root / "shared" / f"{i}.jpg", seed=i)
        make_photo(root / "gone" / f"{i}.jpg", seed=10 + i)
    make_photo(root / "top.jpg", seed=20)
    engine.index([root])
    before = stored(engine)
    assert len(before) == 5

    denier.deny(root / "shared")
    for p in (root / "gone").iterdir():
        p.unlink()
    (root / "gone").rmdir()
    summary = engine.index([root])
    assert reasons(summary, root) == {"shared": "permission denied"}
    assert summary.removed == 2
    assert stored(engine) == {p for p in before if "/gone/" not in p}

    denier.allow(root / "shared")
    assert engine.index([root]).unchanged == 3


def test_raising_the_megapixel_limit_retries_refused_files(engine: Engine, tmp_path: Path) -> None:
    root = tmp_path / "big"
    make_photo(root / "large.png", size=(3000, 2000))
    small = engine.index([root], IndexOptions(max_megapixels=5))
    assert reasons(small, root) == {
        "large.png": "image is 3000×2000 (6 MP), above the 5 MP limit; "
        "raise it with --max-megapixels"
    }
    # Unchanged, but refused only because of a setting: tried again under the new limit.
    raised = engine.index([root], IndexOptions(max_megapixels=10))
    assert raised.failed == [] and raised.new == 1


def test_scanner_reports_unreadable_folders_apart_and_self_links(
    tmp_path: Path, denier: Denier
) -> None:
    make_photo(tmp_path / "ok.jpg")
    make_photo(tmp_path / "closed" / "x.jpg")
    denier.deny(tmp_path / "closed")
    (tmp_path / "self.jpg").symlink_to(tmp_path / "self.jpg")
    files, folders = [], []
    found = scan(
        [str(tmp_path)],
        on_error=lambda p, r: files.append((os.path.basename(p), r)),
        on_folder_error=lambda p, r: folders.append((os.path.basename(p), r)),
    )
    assert [os.path.basename(f.path) for f in found] == ["ok.jpg"]
    assert folders == [("closed", "permission denied")]
    assert files == [("self.jpg", "too many levels of symbolic links")]


# --------------------------------------------------------------------------- indexed


def _exif_rotated(path: Path) -> Path:
    image = Image.new("RGB", (40, 30), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 10, 30))  # a blue band on the stored left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    image.save(path, exif=exif)
    return path


def test_unusual_but_valid_files_are_all_indexed(engine: Engine, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    expected: set[Path] = set()

    def add(path: Path) -> Path:
        expected.add(path)
        return path

    _exif_rotated(add(root / "rotated.jpg"))
    Image.new("RGB", (12000, 200), (20, 90, 160)).save(add(root / "panorama.jpg"))
    make_photo(add(root / "scan.bmp"), seed=1)
    make_photo(add(root / "scan.tif"), seed=2)
    Image.new("I;16", (40, 30), 50000).save(add(root / "gray16.tif"))
    Image.new("LAB", (40, 30), (150, 100, 170)).save(add(root / "lab.tif"))
    Image.new("CMYK", (40, 30), (0, 200, 200, 0)).save(add(root / "cmyk.tif"))
    frames = [Image.new("RGB", (40, 30), c) for c in [(250, 0, 0), (0, 0, 250)]]
    frames[0].save(add(root / "anim.webp"), save_all=True, append_images=frames[1:])
    make_photo(add(root / "SHOUTING.JPEG"), seed=3)
    make_photo(add(root / "Mixed.TiFf"), seed=4, fmt="TIFF")
    make_photo(add(root / "name with  spaces .png"), seed=5)
    make_photo(add(root / "café ñ 日本 🐱.png"), seed=6)
    raw_name = os.fsdecode(b"latin1-\xe9t\xe9 \xff.png")  # not valid UTF-8
    make_photo(add(root / raw_name), seed=7)
    deep = root.joinpath(*[f"{i}-" + "long folder name " * 8 for i in range(6)])
    make_photo(add(deep / ("long file name " * 10 + ".jpg")), seed=8)
    assert len(str(deep)) > 800
    (root / "sub").mkdir()
    make_photo(add(root / "sub" / "inner.png"), seed=9)
    (root / "sub" / "loop").symlink_to(root, target_is_directory=True)
    make_photo(root / ".hidden" / "private.jpg", seed=10)

    summary = engine.index([root])
    assert summary.failed == []
    assert stored(engine) == {str(p) for p in expected}
    assert summary.new == len(expected)

    index = engine.open_index()
    meta = {p: index.get([path_id(str(p))])[path_id(str(p))][1] for p in expected}
    # Sizes as a viewer shows them: EXIF rotation applied, panorama not squeezed.
    assert (meta[root / "rotated.jpg"]["width"], meta[root / "rotated.jpg"]["height"]) == (30, 40)
    assert (meta[root / "panorama.jpg"]["width"], meta[root / "panorama.jpg"]["height"]) == (
        12000,
        200,
    )

    # Hidden folders are left alone unless asked for.
    with_hidden = engine.index([root], IndexOptions(include_hidden=True))
    assert with_hidden.new == 1 and str(root / ".hidden" / "private.jpg") in stored(engine)

    # A name that is not UTF-8 comes back from a search as the same bytes.
    hits = engine.search("a photo", top_k=len(expected) + 1).results
    paths = {h.path for h in hits}
    assert str(root / raw_name) in paths
    assert os.fsencode(str(root / raw_name)).endswith(b"latin1-\xe9t\xe9 \xff.png")


def test_exif_rotation_lab_and_animated_webp_pixels(tmp_path: Path) -> None:
    upright = open_image(str(_exif_rotated(tmp_path / "r.jpg")))
    assert upright.size == (30, 40)
    r, g, b = upright.getpixel((15, 2))  # the blue band is now along the top
    assert b > 200 and r < 60

    # Pillow keeps Lab's a and b offset by 128: (128, 128, 128) is L=50 neutral grey, and a
    # naive conversion would show it as a saturated colour.
    Image.new("LAB", (8, 8), (128, 128, 128)).save(tmp_path / "grey.tif")
    r, g, b = open_image(str(tmp_path / "grey.tif")).getpixel((4, 4))
    assert max(r, g, b) - min(r, g, b) <= 3 and 100 < r < 140
    Image.new("LAB", (8, 8), (128, 200, 128)).save(tmp_path / "red.tif")  # a = +72
    r, g, b = open_image(str(tmp_path / "red.tif")).getpixel((4, 4))
    assert r > 180 and g < 80

    frames = [Image.new("RGB", (20, 20), c) for c in [(250, 0, 0), (0, 0, 250)]]
    frames[0].save(tmp_path / "a.webp", save_all=True, append_images=frames[1:], lossless=True)
    assert open_image(str(tmp_path / "a.webp")).getpixel((5, 5)) == (250, 0, 0)


# --------------------------------------------------------------------------- HEIC


def _heic_file(path: Path) -> Path:
    """A real HEIC photo when pillow-heif can write one, else a file with a HEIC header."""
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
        make_photo(path.with_suffix(".png"))
        Image.open(path.with_suffix(".png")).save(path, format="HEIF")
        path.with_suffix(".png").unlink()
    except ImportError:
        path.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 200)
    return path


def test_heic_without_pillow_heif_is_reported_then_indexed_once_installed(
    engine: Engine, tmp_path: Path
) -> None:
    root = tmp_path / "phone"
    make_photo(root / "ok.jpg")
    photo = _heic_file(root / "IMG_0001.HEIC")

    with pytest.MonkeyPatch.context() as mp:  # pillow-heif "not installed"
        from PIL import Image as PILImage

        mp.setattr(imaging, "_heif_ready", False)
        mp.setattr(PILImage, "ID", [i for i in PILImage.ID if i != "HEIF"])
        first = engine.index([root])
        assert reasons(first, root) == {"IMG_0001.HEIC": HEIC_MISSING}
        assert HEIC_MISSING == "HEIC support not installed: pip install clipseek[heif]"

    imaging._heif_ready = None  # as after `pip install clipseek[heif]` and a restart
    second = engine.index([root])
    if imaging.heif_supported():
        assert second.failed == [] and second.new == 1
        assert str(photo) in stored(engine)
    else:  # still missing: tried again (not remembered as broken) and reported again
        assert reasons(second, root) == {"IMG_0001.HEIC": HEIC_MISSING}


def test_heic_photo_decodes_upright_rgb(tmp_path: Path) -> None:
    pytest.importorskip("pillow_heif")
    image = open_image(str(_heic_file(tmp_path / "x.heic")))
    assert image.mode == "RGB" and image.size == (96, 64)


def test_corrupt_heic_has_a_reason_either_way(tmp_path: Path) -> None:
    bad = tmp_path / "broken.heif"
    bad.write_bytes(b"\x00\x00\x00\x18ftypheic" + b"\x13" * 64)
    with pytest.raises(ImageReadError) as err:
        open_image(str(bad))
    if imaging.heif_supported():
        assert err.value.reason != HEIC_MISSING and "\n" not in err.value.reason
    else:
        assert err.value.reason == HEIC_MISSING


# --------------------------------------------------------------------------- interruptions


@pytest.mark.slow  # after a stopped run the index is checked in a child process
def test_cancel_during_the_scan_changes_nothing(engine: Engine, tmp_path: Path) -> None:
    import threading

    root = tmp_path / "photos"
    files = [make_photo(root / f"{i}.jpg", seed=i) for i in range(4)]
    engine.index([root])
    files[0].unlink()
    make_photo(root / "new.jpg", seed=9)
    cancel = threading.Event()

    def stop_while_scanning(event: object) -> None:
        if isinstance(event, ix.ScanProgress):
            cancel.set()

    summary = engine.index([root], on_event=stop_while_scanning, cancel=cancel)
    assert summary.cancelled and summary.removed == 0 and summary.new == 0
    assert stored(engine) == {str(p) for p in files}  # nothing removed, nothing added
    assert engine.index([root]).removed == 1


def test_failure_record_left_by_a_killed_run_is_cleared(engine: Engine, tmp_path: Path) -> None:
    """A run killed between writing a batch and clearing that batch's old failure records
    leaves both behind; the next run keeps the vector and forgets the failure."""
    root = tmp_path / "photos"
    photo = make_photo(root / "fixed.jpg")
    engine.index([root])
    st = photo.stat()
    engine.open_index().record_failures([(str(photo), st.st_size, st.st_mtime_ns, "old")])
    summary = engine.index([root])
    assert summary.failed == [] and summary.unchanged == 1
    assert engine.open_index().failures() == {}
