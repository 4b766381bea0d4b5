"""Dates, cameras, sizes and GPS read from headers, and the filters built on them."""

from __future__ import annotations

import calendar
import os
from pathlib import Path

import pytest
from PIL import Image

from clipseek.errors import QueryError
from clipseek.photos.metadata import read_photo_meta
from clipseek.search.filters import make_filters, parse_filter_line, period_start


def exif_photo(
    path: Path,
    *,
    size: tuple[int, int] = (64, 48),
    date: str | None = None,
    offset: str | None = None,
    make: str | None = None,
    model: str | None = None,
    orientation: int | None = None,
    gps: tuple[str, tuple[float, float, float], str, tuple[float, float, float]] | None = None,
    fmt: str = "JPEG",
) -> Path:
    image = Image.new("RGB", size, (120, 30, 200))
    exif = Image.Exif()
    if make:
        exif[0x010F] = make
    if model:
        exif[0x0110] = model
    if orientation:
        exif[0x0112] = orientation
    if date or offset:
        sub = exif.get_ifd(0x8769)
        if date:
            sub[0x9003] = date
        if offset:
            sub[0x9011] = offset
    if gps:
        g = exif.get_ifd(0x8825)
        g[1], g[2], g[3], g[4] = gps
    image.save(path, fmt, exif=exif)
    return path


def test_exif_date_with_offset_camera_and_gps(tmp_path: Path) -> None:
    path = exif_photo(
        tmp_path / "a.jpg",
        date="2024:07:14 18:30:05",
        offset="+02:00",
        make="Google",
        model="Pixel 7",
        gps=("N", (48.0, 51.0, 29.6), "E", (2.0, 17.0, 40.2)),
    )
    meta = read_photo_meta(str(path))
    assert meta.taken_source == "exif"
    assert meta.taken_text == "2024-07-14T18:30:05+02:00"
    assert meta.taken_local == calendar.timegm((2024, 7, 14, 18, 30, 5))
    assert meta.taken_utc == calendar.timegm((2024, 7, 14, 16, 30, 5))
    assert meta.camera == "Google Pixel 7"
    assert meta.gps == pytest.approx((48.858222, 2.294500), abs=1e-5)
    assert (meta.width, meta.height) == (64, 48)
    assert meta.problem == ""


def test_west_and_south_coordinates_are_negative(tmp_path: Path) -> None:
    path = exif_photo(
        tmp_path / "sydney.jpg",
        date="2023:01:02 03:04:05",
        gps=("S", (33.0, 51.0, 25.0), "W", (151.0, 12.0, 55.0)),
    )
    lat, lon = read_photo_meta(str(path)).gps
    assert lat < 0 and lon < 0


def test_no_offset_keeps_wall_clock_and_camera_name_is_not_doubled(tmp_path: Path) -> None:
    path = exif_photo(
        tmp_path / "b.jpg", date="2021:12:31 23:59:59", make="Apple", model="Apple iPhone 13"
    )
    meta = read_photo_meta(str(path))
    assert meta.taken_text == "2021-12-31T23:59:59"
    assert meta.taken_local == meta.taken_utc == calendar.timegm((2021, 12, 31, 23, 59, 59))
    assert meta.camera == "Apple iPhone 13"


def test_orientation_swaps_the_size(tmp_path: Path) -> None:
    path = exif_photo(tmp_path / "r.jpg", size=(80, 40), orientation=6)
    meta = read_photo_meta(str(path))
    assert (meta.width, meta.height) == (40, 80)


def test_missing_exif_falls_back_to_mtime_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "plain.png"
    Image.new("RGB", (30, 20)).save(path)
    stamp = calendar.timegm((2020, 5, 6, 7, 8, 9))
    os.utime(path, (stamp, stamp))
    meta = read_photo_meta(str(path))
    assert meta.taken_source == "mtime"
    assert meta.taken_utc == stamp
    assert meta.camera == "" and meta.gps is None and meta.problem == ""


def test_placeholder_date_is_noted_and_mtime_used(tmp_path: Path) -> None:
    path = exif_photo(tmp_path / "zero.jpg", date="0000:00:00 00:00:00", make="Canon")
    meta = read_photo_meta(str(path))
    assert meta.taken_source == "mtime"
    assert "0000:00:00" in meta.problem
    assert meta.camera == "Canon"


def test_corrupt_exif_and_garbage_files_never_raise(tmp_path: Path) -> None:
    good = exif_photo(tmp_path / "c.jpg", date="2024:01:01 00:00:00", make="Nikon")
    data = bytearray(good.read_bytes())
    at = data.find(b"Exif\x00\x00")
    assert at > 0
    data[at + 6 : at + 40] = b"\xff" * 34  # the TIFF header and first IFD, garbled
    broken = tmp_path / "broken-exif.jpg"
    broken.write_bytes(bytes(data))
    meta = read_photo_meta(str(broken))
    assert meta.taken_source == "mtime"
    assert (meta.width, meta.height) == (64, 48)
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not an image at all")
    meta = read_photo_meta(str(garbage))
    assert meta.taken_source == "mtime" and "header unreadable" in meta.problem


def test_partial_dates_and_periods() -> None:
    assert period_start("2024", "--after") == calendar.timegm((2024, 1, 1, 0, 0, 0))
    assert period_start("2024-06", "--after") == calendar.timegm((2024, 6, 1, 0, 0, 0))
    assert period_start("2024-06-15", "--after") == calendar.timegm((2024, 6, 15, 0, 0, 0))
    assert period_start("2024-12", "--x", end=True) == calendar.timegm((2025, 1, 1, 0, 0, 0))
    assert period_start("2024", "--x", end=True) == calendar.timegm((2025, 1, 1, 0, 0, 0))


@pytest.mark.parametrize(
    ("after", "before", "size", "needle"),
    [
        ("June", None, None, "YYYY-MM"),
        ("2024-13", None, None, "no such month"),
        ("2023-02-29", None, None, "no day 29"),
        ("2024-09", "2024-06", None, "not before"),
        (None, None, "1000by800", "WIDTHxHEIGHT"),
    ],
)
def test_bad_filters_are_refused_clearly(after, before, size, needle) -> None:
    with pytest.raises(QueryError, match=needle):
        make_filters(after, before, None, size)


def test_filter_clauses_match_cameras_case_insensitively() -> None:
    filters = make_filters("2024-06", "2024-09", "pixel", "1000x800")
    clauses = filters.clauses(["Google Pixel 7", "Google Pixel 8 Pro", "Canon EOS R5"])
    assert {"camera": {"$in": ["Google Pixel 7", "Google Pixel 8 Pro"]}} in clauses
    assert {"width": {"$gte": 1000}} in clauses and {"height": {"$gte": 800}} in clauses
    assert filters.clauses(["Canon EOS R5"]) is None  # nothing can match
    assert "camera matching 'pixel'" in filters.describe()


def test_filter_line() -> None:
    filters = parse_filter_line("after:2024-06 camera:pixel size:10x10")
    assert filters.after == calendar.timegm((2024, 6, 1, 0, 0, 0))
    assert filters.camera == "pixel" and (filters.min_width, filters.min_height) == (10, 10)
    with pytest.raises(QueryError, match="not understood"):
        parse_filter_line("when:yesterday")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_metadata_read_while_decoding_matches_a_header_read(tmp_path: Path, fmt: str) -> None:
    from clipseek.photos.imaging import load_for_model

    path = exif_photo(
        tmp_path / f"a.{fmt.lower()}",
        size=(640, 480),
        date="2023:01:02 03:04:05",
        offset="-05:00",
        make="Canon",
        model="EOS R6",
        orientation=6,
        fmt=fmt,
    )
    mtime_ns = os.stat(path).st_mtime_ns
    _item, dims = load_for_model(str(path), lambda im: im.size, (32, 32), None, mtime_ns)
    assert dims.meta["taken_source"] == "exif" and dims.meta["camera"] == "Canon EOS R6"
    assert dims.meta == read_photo_meta(str(path), mtime_ns).metadata()
    assert (dims.width, dims.height) == (480, 640)  # upright, and the file's own size
    _item, plain = load_for_model(str(path), lambda im: im.size, (32, 32), None)
    assert plain.meta == {}


def test_indexing_opens_each_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second open for the metadata decoded every PNG twice (Pillow reads all of a PNG's
    chunks to find its EXIF): the indexer now takes it from the image it decodes."""
    from PIL import Image as PILImage

    from clipseek.config import load_settings
    from clipseek.engine import Engine
    from clipseek.testing import fixture_model_spec

    folder = tmp_path / "photos"
    folder.mkdir()
    exif_photo(folder / "a.png", date="2022:05:06 07:08:09", make="Fuji", fmt="PNG")
    exif_photo(folder / "b.jpg", date="2021:05:06 07:08:09", make="Sony", fmt="JPEG")
    Image.new("RGB", (40, 30), (1, 2, 3)).save(folder / "c.png")
    opened: list[str] = []
    real_open = PILImage.open

    def counting_open(fp, *args, **kwargs):
        opened.append(os.path.basename(str(fp)))
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(PILImage, "open", counting_open)
    settings = load_settings(
        {"model": fixture_model_spec(), "db": tmp_path / "db", "device": "cpu", "precision": "fp32"}
    )
    engine = Engine(settings)
    summary = engine.index([folder])
    assert summary.new == 3 and not summary.failed
    assert sorted(opened) == ["a.png", "b.jpg", "c.png"]
    stored = {os.path.basename(e.path): e.extra for e in engine.open_index().entries().values()}
    assert stored["a.png"]["taken_source"] == "exif" and stored["a.png"]["camera"] == "Fuji"
    assert stored["b.jpg"]["taken"].startswith("2021-05-06")
    assert stored["c.png"]["taken_source"] == "mtime"


def test_renamed_and_copied_photos_carry_their_metadata_without_a_decode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file whose bytes are indexed reuses the vector and, now, the metadata: reading its
    header again decoded a whole PNG (a renamed folder of 1,000 PNGs took seconds)."""
    import shutil

    from PIL import Image as PILImage

    from clipseek.config import load_settings
    from clipseek.engine import Engine
    from clipseek.testing import fixture_model_spec

    album = tmp_path / "photos" / "album"
    album.mkdir(parents=True)
    exif_photo(album / "a.png", date="2022:05:06 07:08:09", make="Fuji", fmt="PNG")
    Image.new("RGB", (40, 30), (1, 2, 3)).save(album / "b.png")
    jan_2020 = calendar.timegm((2020, 1, 1, 12, 0, 0))
    os.utime(album / "b.png", (jan_2020, jan_2020))
    settings = load_settings(
        {"model": fixture_model_spec(), "db": tmp_path / "db", "device": "cpu", "precision": "fp32"}
    )
    assert Engine(settings).index([tmp_path / "photos"]).new == 2

    moved = album.rename(tmp_path / "photos" / "renamed")
    shutil.copyfile(moved / "b.png", moved / "c.png")  # same bytes, its own mtime
    june_2021 = calendar.timegm((2021, 6, 1, 12, 0, 0))
    os.utime(moved / "c.png", (june_2021, june_2021))
    opened: list[str] = []
    real_open = PILImage.open
    monkeypatch.setattr(
        PILImage, "open", lambda fp, *a, **k: opened.append(str(fp)) or real_open(fp, *a, **k)
    )
    engine = Engine(settings)
    summary = engine.index([tmp_path / "photos"])
    assert summary.reused == 3 and summary.removed == 2 and opened == []
    stored = {os.path.basename(e.path): e.extra for e in engine.open_index().entries().values()}
    assert stored["a.png"]["taken_source"] == "exif" and stored["a.png"]["camera"] == "Fuji"
    assert stored["a.png"]["taken"].startswith("2022-05-06T07:08:09")
    assert stored["b.png"]["taken_source"] == "mtime" and stored["b.png"]["taken_utc"] == jan_2020
    assert stored["c.png"]["taken_source"] == "mtime" and stored["c.png"]["taken_utc"] == june_2021
    assert stored["c.png"]["taken"] != stored["b.png"]["taken"]


def test_metadata_is_not_carried_from_an_entry_that_has_none() -> None:
    from clipseek.photos.metadata import carried_metadata

    assert carried_metadata({"path": "/x.png", "size": 3}, 0) is None
    kept = carried_metadata(
        {
            "path": "/x.jpg",
            "taken_local": 1,
            "taken_utc": 1,
            "taken_source": "exif",
            "taken": "1970-01-01T00:00:01",
            "camera": "A",
            "camera_lc": "a",
            "has_gps": True,
            "gps_lat": 1.5,
            "gps_lon": -2.5,
        },
        10**18,
    )
    assert kept is not None and "path" not in kept
    assert (kept["taken_utc"], kept["gps_lat"], kept["camera"]) == (1, 1.5, "A")


def test_an_mtime_beyond_the_calendar_is_a_date_not_a_failure(tmp_path: Path) -> None:
    """tmpfs, btrfs and XFS keep mtimes past the year 9999, which datetime cannot show: the
    date is clamped, and the file is still read and indexed."""
    from clipseek.photos.imaging import load_for_model

    path = exif_photo(tmp_path / "far.png", fmt="PNG")
    far_future, far_past = 10**12 * 10**9, -(10**12) * 10**9
    for mtime_ns in (far_future, far_past):
        meta = read_photo_meta(str(path), mtime_ns)
        assert meta.taken_source == "mtime" and meta.taken_text[:4] in ("9999", "0001")
        _item, dims = load_for_model(str(path), lambda im: im.size, (8, 8), None, mtime_ns)
        assert dims.meta["taken"] == meta.taken_text
