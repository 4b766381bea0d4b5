"""What a hands-on and an adversarial trial of the command line found (issue 25, items
6, 7, 8, 11, 18-21): each test failed before its fix."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clipseek.cli.app import app
from tests.support.pictures import make_photo
from tests.support.probes import assert_one_clear_line

# --------------------------------------------------------------------------- 18


def test_a_mistyped_folder_does_not_mark_the_index_interrupted(
    runner: CliRunner, cli_env: Path, photos: Path, tmp_path: Path
) -> None:
    from clipseek.store.repair import RUN_MARKER

    assert runner.invoke(app, ["index", str(photos)]).exit_code == 0
    typo = runner.invoke(app, ["index", str(tmp_path / "nonexistent")])
    assert_one_clear_line(typo, "does not exist", "nothing was indexed")
    assert not (cli_env / RUN_MARKER).exists()
    again = runner.invoke(app, ["index", str(photos)])
    assert again.exit_code == 0, again.output
    assert "interrupted" not in again.output
    assert "12 unchanged" in again.stdout


# --------------------------------------------------------------------------- 11


@pytest.mark.parametrize("flag", ["--threads", "--workers"])
@pytest.mark.parametrize("value", ["99999999999999999999", "0", "-2", "100000"])
def test_thread_counts_out_of_range_are_refused_in_a_sentence(
    runner: CliRunner, cli_env: Path, photos: Path, flag: str, value: str
) -> None:
    result = runner.invoke(app, ["index", str(photos), flag, value])
    assert_one_clear_line(result, f"{flag} {value}: ", "must be a whole number from 1 to")
    assert not (cli_env / "chroma.sqlite3").exists()  # refused before anything was written


def test_thread_counts_out_of_range_are_refused_by_the_quick_path_too() -> None:
    from clipseek.cli.quick import parse

    assert parse(["/x", "--threads", "99999999999999999999"]) is None
    assert parse(["/x", "--workers=100000"]) is None
    assert parse(["/x", "--threads", "4"]) is not None


@pytest.mark.parametrize(
    "url", ["file:///etc", "ftp://host/x", "localhost:8000", "http://", "http://host:notaport"]
)
def test_a_chroma_url_must_be_an_http_url(runner: CliRunner, cli_env: Path, url: str) -> None:
    from clipseek.errors import ConfigError

    with pytest.raises(ConfigError, match="http:// or https:// URL"):
        from clipseek.config import load_settings

        load_settings({"chroma_url": url})
    result = runner.invoke(app, ["info", "--chroma-url", url])
    assert_one_clear_line(result, "http:// or https:// URL")
    assert not Path("file:").exists() and not Path("localhost:8000").exists()


def test_chroma_urls_that_are_http_urls_are_kept() -> None:
    from clipseek.config import load_settings

    for url in ("http://localhost:8000", "https://chroma.example.org", "http://[::1]:8000"):
        assert load_settings({"chroma_url": url}).chroma_url == url


@pytest.fixture
def shm_photos() -> Path:
    import shutil
    import tempfile

    if not os.path.isdir("/dev/shm") or not os.access("/dev/shm", os.W_OK):
        pytest.skip("no writable /dev/shm")
    root = Path(tempfile.mkdtemp(prefix="clipseek-test-", dir="/dev/shm"))
    try:
        make_photo(root / "photos" / "a.jpg", seed=1)
        make_photo(root / "photos" / "b.png", seed=2)
        yield root / "photos"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_an_ordinary_tmpfs_under_dev_can_be_indexed(
    runner: CliRunner, cli_env: Path, shm_photos: Path
) -> None:
    result = runner.invoke(app, ["index", str(shm_photos)])
    assert result.exit_code == 0, result.output
    assert "2 new" in result.stdout
    for folder in ("/dev", "/dev/pts", "/proc/self"):  # the real ones stay refused
        if os.path.isdir(folder):
            refused = runner.invoke(app, ["index", folder])
            assert_one_clear_line(refused, "pseudo file system", "nothing was indexed")


# --------------------------------------------------------------------------- 19


def test_nothing_to_do_stays_quick_when_the_index_holds_a_failed_file(
    runner: CliRunner, cli_env: Path, photos: Path, tmp_path: Path, capsys
) -> None:
    from clipseek.cli.quick import index_if_unchanged
    from clipseek.config import load_settings
    from clipseek.engine import Engine
    from clipseek.indexing.options import IndexOptions

    other = tmp_path / "other"
    make_photo(other / "x.jpg", seed=40)
    (other / "broken.jpg").write_bytes(b"not a jpeg")
    (photos / "broken.jpg").write_bytes(b"not a jpeg either")
    for folder in (photos, other):
        assert runner.invoke(app, ["index", str(folder)]).exit_code == 0
    settings = load_settings()
    engine = Engine(settings)

    def facts(summary):
        failed = sorted((f.path, f.reason) for f in summary.failed)
        return summary.total, summary.unchanged, summary.new, summary.removed, failed

    for roots in ([photos], [other], [photos, other], [photos / "sub"]):
        if roots == [photos / "sub"]:  # no failure in it, one elsewhere in the index
            assert runner.invoke(app, ["index", str(photos / "sub")]).exit_code == 0
        options = IndexOptions.from_settings(settings)
        quick = engine.index_if_unchanged([str(r) for r in roots], options)
        assert quick is not None, roots  # answered from the SQLite file
        normal = engine.index(
            [str(r) for r in roots], IndexOptions.from_settings(settings, quick_check=False)
        )
        assert facts(quick) == facts(normal)

    # The console script's quick answer names the failed file as the full run does.
    capsys.readouterr()
    assert index_if_unchanged([str(photos)]) is True
    err = capsys.readouterr().err
    assert f"skipped {photos / 'broken.jpg'}: " in err
    assert "1 file(s) could not be read" in err

    # A failed file that is gone, or worth another try, is the normal path's to handle.
    (other / "broken.jpg").unlink()
    assert engine.index_if_unchanged([str(other)], IndexOptions.from_settings(settings)) is None


# --------------------------------------------------------------------------- 21


def test_save_to_a_png_name_writes_that_file_and_its_json_beside(
    runner: CliRunner, cli_env: Path, photos: Path, tmp_path: Path
) -> None:
    assert runner.invoke(app, ["index", str(photos)]).exit_code == 0
    target = tmp_path / "results" / "sheet.png"
    saved = runner.invoke(app, ["query", "a photo", "--save", str(target)])
    assert saved.exit_code == 0, saved.output
    assert target.is_file() and target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads(target.with_suffix(".json").read_text(encoding="utf-8"))["results"]
    assert len(results) == 5
    assert str(target) in saved.stderr
    # a folder is still a folder: stamped names inside it
    folder = tmp_path / "sheets"
    assert runner.invoke(app, ["query", "a photo", "--save", str(folder)]).exit_code == 0
    assert len(list(folder.glob("*-results.png"))) == 1
    wrong = runner.invoke(app, ["query", "a photo", "--save", str(tmp_path / "sheet.jpg")])
    assert_one_clear_line(wrong, "PNG", ".png")
    assert not (tmp_path / "sheet.jpg").exists()


def test_duplicates_show_small_files_in_kb(
    runner: CliRunner, cli_env: Path, tmp_path: Path, monkeypatch
) -> None:
    from clipseek.cli.app import _file_size

    assert [_file_size(n) for n in (512, 13_400, 45_000, 999_499, 2_500_000, 3_200_000_000)] == [
        "512 B",
        "13 KB",
        "45 KB",
        "999 KB",
        "2.5 MB",
        "3.2 GB",
    ]
    monkeypatch.setenv("COLUMNS", "200")
    make_photo(tmp_path / "lib" / "a.jpg", seed=3)
    make_photo(tmp_path / "lib" / "b.jpg", seed=3)
    assert runner.invoke(app, ["index", str(tmp_path / "lib")]).exit_code == 0
    table = runner.invoke(app, ["duplicates"])
    assert table.exit_code == 0, table.output
    assert "0.0 MB" not in table.stdout and " KB" in table.stdout


def test_the_weight_zero_error_says_which_weights_are_valid() -> None:
    from clipseek.errors import QueryError
    from clipseek.search.query import parse_query

    with pytest.raises(QueryError) as caught:
        parse_query(["0:red"])
    message = str(caught.value)
    assert "above 0" not in message
    assert "-100 to 100" in message and "negative" in message
    assert parse_query(['-1:"red" + "blue"']).terms[0].weight == -1.0  # as the message says


@pytest.mark.slow  # a server
def test_serve_on_an_empty_index_says_new_images_come_within_seconds(
    runner: CliRunner, cli_env: Path, monkeypatch
) -> None:
    pytest.importorskip("fastapi")
    import typer

    from clipseek import server
    from clipseek.cli import app as cli_app

    served: list[object] = []
    monkeypatch.setattr(server, "serve", lambda engine, *a, **k: served.append(engine))

    def leave(code: int) -> None:
        raise typer.Exit(code)

    monkeypatch.setattr(cli_app, "_exit_now", leave)
    result = runner.invoke(app, ["serve", "--port", "0"])
    assert result.exit_code == 0, result.output
    assert served
    assert "Nothing is indexed" in result.stderr
    assert "within seconds" in result.stderr and "next start" not in result.stderr


# --------------------------------------------------------------------------- 20


def test_sort_by_date_shows_dates_and_marks_file_times(
    runner: CliRunner, cli_env: Path, photos: Path, monkeypatch
) -> None:
    import time

    monkeypatch.setenv("COLUMNS", "200")
    for i, path in enumerate(sorted(p for p in photos.rglob("*") if p.is_file())):
        stamp = time.mktime((2020 + i, 1, 2, 3, 4, 0, 0, 0, -1))
        os.utime(path, (stamp, stamp))
    assert runner.invoke(app, ["index", str(photos)]).exit_code == 0
    by_date = runner.invoke(app, ["query", "a photo", "-k", "12", "--sort", "date"])
    assert by_date.exit_code == 0, by_date.output
    assert "taken" in by_date.stdout
    lines = [line for line in by_date.stdout.splitlines() if "file time" in line]
    assert len(lines) == 12, by_date.stdout
    years = [int(re.search(r"(\d{4})-\d\d-\d\d \d\d:\d\d file time", ln)[1]) for ln in lines]
    assert years == sorted(years)  # the order the column explains
    # by score, file times alone take no column (they stay in --json)
    by_score = runner.invoke(app, ["query", "a photo", "-k", "12"])
    assert "file time" not in by_score.stdout


# --------------------------------------------------------------------------- 7


def test_the_thumbnail_cache_is_private_and_knows_a_replaced_picture(tmp_path: Path) -> None:
    import stat

    from clipseek.tui.gallery_thumbs import GalleryThumbnails

    photo = make_photo(tmp_path / "pics" / "p.bmp", size=(400, 300), seed=1)
    cache = tmp_path / "cache" / "thumbnails"
    cache.parent.mkdir()
    old = os.umask(0o022)  # a usual umask: what is not asked for is 0755/0644
    try:
        first = GalleryThumbnails(cache)
        before = first.load(str(photo), (200, 150))
    finally:
        os.umask(old)
    assert before.image is not None
    files = list(cache.rglob("*.jpg"))
    assert len(files) == 1
    for folder in (cache, files[0].parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600

    # Another picture of the same size put in its place with the same mtime: after a
    # restart (a new cache object), the new picture is shown, not the old thumbnail.
    st = photo.stat()
    replacement = tmp_path / "other.bmp"
    make_photo(replacement, size=(400, 300), seed=9)  # a BMP: the same size in bytes
    data = replacement.read_bytes()
    assert len(data) == st.st_size and data != photo.read_bytes()
    photo.write_bytes(data)
    os.utime(photo, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (photo.stat().st_size, photo.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    second = GalleryThumbnails(cache)
    after = second.load(str(photo), (200, 150))
    assert second.disk_hits == 0 and second.decoded == 1
    assert after.image is not None and after.image.tobytes() != before.image.tobytes()

    # A cache folder made before this (0755) is made private when next written, which
    # also closes the way to the older thumbnails inside it.
    open_cache = tmp_path / "old-cache"
    (open_cache / "ab").mkdir(parents=True, mode=0o755)
    os.chmod(open_cache, 0o755)
    GalleryThumbnails(open_cache).load(str(photo), (100, 75))
    assert stat.S_IMODE(open_cache.stat().st_mode) == 0o700
    (written,) = open_cache.rglob("*.jpg")
    assert stat.S_IMODE(written.parent.stat().st_mode) == 0o700
