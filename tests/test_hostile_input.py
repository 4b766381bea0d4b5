"""Settings, queries and folders that could hurt (issue 12): each is refused with one clear
sentence, or handled, through the real CLI where a person would meet it."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clipseek.cli.app import app
from clipseek.config import config_file_path, load_settings
from clipseek.errors import ConfigError, QueryError
from tests.support.files import Denier
from tests.support.probes import assert_one_clear_line

NINES = "9" * 400


def write_config(data: bytes) -> Path:
    path = config_file_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- 5. numbers


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "0", "-3", "1e999", "lots"])
def test_the_megapixel_limit_must_be_a_positive_number_everywhere(
    value: str, monkeypatch: pytest.MonkeyPatch, runner: CliRunner, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"--max-megapixels .*must be a positive number"):
        load_settings({"max_megapixels": value})
    monkeypatch.setenv("CLIPSEEK_MAX_MEGAPIXELS", value)
    with pytest.raises(ConfigError, match=f"CLIPSEEK_MAX_MEGAPIXELS={value}: the megapixel"):
        load_settings()
    monkeypatch.delenv("CLIPSEEK_MAX_MEGAPIXELS")
    write_config(f'max_megapixels = "{value}"\n'.encode())
    with pytest.raises(ConfigError, match=r"max_megapixels = .* in the config file"):
        load_settings()
    result = runner.invoke(app, ["index", str(tmp_path), "--max-megapixels", value])
    if value == "lots":
        assert result.exit_code == 2  # Click's usage error for a non-number
    else:
        assert_one_clear_line(result, "the megapixel limit must be a positive number")


@pytest.mark.parametrize("literal", ["nan", "inf", "-inf", "0", "0.0", "true"])
def test_toml_numbers_that_are_not_limits(literal: str) -> None:
    write_config(f"max_megapixels = {literal}\n".encode())
    with pytest.raises(ConfigError, match="positive number"):
        load_settings()


def test_serve_refuses_nan_before_starting(runner: CliRunner) -> None:
    pytest.importorskip("fastapi")
    result = runner.invoke(app, ["serve", "--port", "0", "--max-megapixels", "nan"])
    assert_one_clear_line(result, "--max-megapixels nan: the megapixel limit")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"batch_size = true\n", "batch_size = True in the config file"),
        (b"batch_size = 8.5\n", "batch_size = 8.5 in the config file"),
        (b'batch_size = "abc"\n', "batch_size = 'abc' in the config file"),
        (b"batch_size = 0\n", "from 1 to 4096"),
    ],
)
def test_bad_batch_sizes_in_the_config_file_are_named(text: bytes, message: str) -> None:
    write_config(text)
    settings = load_settings()  # only commands that use the batch size refuse it
    assert settings.batch_size == 32
    with pytest.raises(ConfigError, match=message):
        settings.require("batch_size")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"db = 5\n", "db = 5 in the config file .*: db must be a folder path"),
        (b"db = true\n", "db must be a folder path"),
        (b'db = ""\n', "db must be a folder path"),
        (b"model = 3\n", "model must be text"),
        (b"device = false\n", "device must be text"),
        (b"chroma_url = 1\n", "chroma_url must be text"),
    ],
)
def test_config_values_of_the_wrong_type(text: bytes, message: str) -> None:
    write_config(text)
    with pytest.raises(ConfigError, match=message):
        load_settings()


def test_a_config_file_that_is_not_utf8(runner: CliRunner) -> None:
    path = write_config('model = "Vi\xe9T-B/32"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_settings()
    result = runner.invoke(app, ["info"])
    assert_one_clear_line(result, f"The config file {path} is not UTF-8 text")


def test_a_bad_batch_size_variable_stops_index_but_not_query(
    runner: CliRunner, cli_env: Path, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert runner.invoke(app, ["index", str(photos)]).exit_code == 0
    monkeypatch.setenv("CLIPSEEK_BATCH_SIZE", "abc")
    result = runner.invoke(app, ["index", str(photos)])
    assert_one_clear_line(
        result, "CLIPSEEK_BATCH_SIZE=abc: the batch size must be a whole number from 1 to 4096."
    )
    assert "invalid literal" not in result.output
    query = runner.invoke(app, ["query", "a photo", "--json"])
    assert query.exit_code == 0, query.output
    assert json.loads(query.stdout)["total_results"] == 5
    flag = runner.invoke(app, ["index", str(photos), "--batch-size", "4"])  # a flag wins
    assert flag.exit_code == 0, flag.output


# --------------------------------------------------------------------------- 7. weights


@pytest.mark.parametrize(
    "query",
    [f'{NINES}:"x"', '101:"x"', '"a" - 1000:"b"', f'"a" + {NINES}.5:"b"', '1e308:"a" + 1000:"b"'],
)
def test_weights_must_be_finite_and_sane(query: str) -> None:
    from clipseek.search.query import parse_query

    with pytest.raises(QueryError, match=r"The weight .* is too large; use a number from -100"):
        parse_query([query])


def test_ordinary_weights_still_parse() -> None:
    from clipseek.search.query import parse_query

    weights = [t.weight for t in parse_query(['100:"a" + 0.5:"b" - 2:"c"']).terms]
    assert weights == [100.0, 0.5, -2.0]


def test_an_overflowing_weight_is_refused_not_scored_nan(
    runner: CliRunner, cli_env: Path, photos: Path
) -> None:
    assert runner.invoke(app, ["index", str(photos)]).exit_code == 0
    result = runner.invoke(app, ["query", f'{NINES}:"x"', "--json"])
    assert_one_clear_line(result, "is too large; use a number from -100 to 100")
    assert result.stdout == ""
    good = runner.invoke(app, ["query", '100:"x" + 100:"y"', "--json"])
    assert good.exit_code == 0
    scores = [r["score"] for r in json.loads(good.stdout)["results"]]  # strict JSON: no NaN
    assert scores and all(-1.0 <= s <= 1.0 for s in scores)


# --------------------------------------------------------------------------- 6. folders


def test_pseudo_file_systems_are_refused(runner: CliRunner, cli_env: Path) -> None:
    for folder in ("/proc", "/proc/self", "/sys", "/dev"):
        if not os.path.isdir(folder):
            continue
        result = runner.invoke(app, ["index", folder])
        assert_one_clear_line(result, "pseudo file system", "nothing was indexed")


def test_pseudo_mounts_are_read_from_the_mount_table(tmp_path: Path) -> None:
    from clipseek.indexing.scanner import pseudo_mounts

    table = tmp_path / "mounts"
    table.write_text(
        "proc /proc proc rw 0 0\n"
        "sysfs /sys sysfs rw 0 0\n"
        "proc /srv/my\\040proc proc rw 0 0\n"
        "/dev/sda1 / ext4 rw 0 0\n"
        "tmpfs /dev tmpfs rw 0 0\n"
        "tmpfs /dev/shm tmpfs rw 0 0\n"
        "tmpfs /tmp tmpfs rw 0 0\n"
        "nas:/photos /mnt/nas nfs4 rw 0 0\n"
    )
    assert pseudo_mounts(str(table)) == {
        "/proc": "proc",
        "/sys": "sysfs",
        "/srv/my proc": "proc",
        "/dev": "tmpfs",
    }  # /dev/shm, a tmpfs below /dev, holds ordinary files (issue 25 item 11)


def test_links_into_pseudo_file_systems_are_never_followed(engine, photos: Path) -> None:
    (photos / "proc-link").symlink_to("/proc")
    (photos / "self.jpg").symlink_to("/proc/self/environ")
    (photos / "zero.jpg").symlink_to("/dev/zero")
    (photos / "sys").symlink_to("/sys")
    summary = engine.index([str(photos)])
    assert summary.total == 12
    assert summary.failed == []
    assert summary.outside_links == []  # never entered, so nothing to report either


def test_links_outside_the_folder_are_reported_and_can_be_skipped(
    runner: CliRunner, cli_env: Path, photos: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(photos / "sub", elsewhere)  # 4 pictures
    (photos / "linked").symlink_to(elsewhere)
    (photos / "inner-link").symlink_to(photos / "sub")  # inside: not reported
    first = runner.invoke(app, ["index", str(photos)])
    assert first.exit_code == 0, first.output
    assert f"1 link(s) lead outside the indexed folders: {photos / 'linked'} → {elsewhere}" in (
        first.stderr
    )
    assert "--skip-outside-links" in first.stderr
    assert "16 new" in first.stdout
    skipped = runner.invoke(app, ["index", str(photos), "--skip-outside-links"])
    assert skipped.exit_code == 0, skipped.output
    assert "1 link(s) lead outside the indexed folders and were skipped" in skipped.stderr
    assert "4 removed" in skipped.stdout


def test_a_link_to_the_root_does_not_crawl_the_disk(engine, photos: Path) -> None:
    (photos / "everything").symlink_to("/")
    from clipseek.indexing.options import IndexOptions

    summary = engine.index(
        [str(photos)], IndexOptions(skip_outside_links=True, batch_size=8, max_megapixels=200)
    )
    assert summary.total == 12
    assert summary.outside_links == [(str(photos / "everything"), "/")]


# --------------------------------------------------------------------------- 9. messages


def test_an_unreadable_folder_is_counted_as_a_folder(
    runner: CliRunner, cli_env: Path, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Denier(monkeypatch).deny(photos / "sub" / "deeper")
    (photos / "broken.jpg").write_text("nope")
    result = runner.invoke(app, ["index", str(photos)])
    assert result.exit_code == 0, result.output
    assert "1 failed, 1 folder(s) unreadable." in result.stdout
    assert "1 file(s) and 1 folder(s) could not be read" in result.stderr


def test_reused_files_are_not_logged_at_zero_images_per_second(
    runner: CliRunner, cli_env: Path, photos: Path
) -> None:
    assert runner.invoke(app, ["index", str(photos)]).exit_code == 0
    (photos / "sub").rename(photos / "moved")
    result = runner.invoke(app, ["index", str(photos)])
    assert result.exit_code == 0, result.output
    assert "(0.0 images/s)" not in result.output
    assert "4 of 4 done (already indexed under another name)" in result.stderr


def _jpeg_with_corrupt_exif() -> bytes:
    from PIL import Image

    # one IFD entry whose data lies past the end of the EXIF block
    tiff = (
        b"II*\x00"
        + struct.pack("<I", 8)
        + struct.pack("<H", 1)
        + struct.pack("<HHII", 0x010F, 2, 100, 1000)
        + struct.pack("<I", 0)
    )
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(out, "JPEG", exif=b"Exif\x00\x00" + tiff)
    return out.getvalue()


@pytest.mark.slow  # a clipseek process
def test_pillows_exif_warnings_do_not_reach_stderr(
    cli_env: Path, tmp_path: Path, fast_path: str
) -> None:
    import warnings

    from PIL import Image, ImageOps

    data = _jpeg_with_corrupt_exif()
    with warnings.catch_warnings(record=True) as caught:  # the file does make Pillow warn
        warnings.simplefilter("always")
        ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    assert caught
    folder = tmp_path / "exif"
    folder.mkdir()
    (folder / "camera.jpg").write_bytes(data)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run(
        [sys.executable, "-m", "clipseek", "index", str(folder)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "1 new" in result.stdout
    assert "Warning" not in result.stderr and "EXIF" not in result.stderr
    assert "Skipping tag" not in result.stderr, result.stderr
