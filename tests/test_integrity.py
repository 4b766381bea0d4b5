"""Checking and repairing an index without the model, damaged vector files that must not
crash any command, one-to-one folder keys, and the ctime/inode change check.

The damage tests run each command as a real process: a crash inside Chroma's native
code kills the process (exit 139), which an in-process runner could not survive.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clipseek.config import Settings
from clipseek.engine import Engine
from clipseek.errors import DamagedIndexError
from clipseek.store import Store
from clipseek.store import chroma as chroma_store
from clipseek.store.repair import check, repair
from tests.conftest import make_photo
from tests.reliability_helpers import cli_env

VECTOR_FILES = ("data_level0.bin", "header.bin", "link_lists.bin", "length.bin")


def _engine(db: Path, model: str) -> Engine:
    return Engine(Settings(db=str(db), model=model, device="cpu", precision="fp32"))


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> tuple[Path, Path]:
    """Photos and an index of them whose vector files are really written.

    Chroma keeps recent writes in SQLite and writes its vector files every
    ``sync_threshold`` records (1000 by default); a small threshold makes this small
    index persist its graph, so that damage to those files can be tested."""
    root = tmp_path_factory.mktemp("integrity")
    photos = root / "photos"
    for i in range(40):
        make_photo(photos / f"d{i % 3}" / f"p{i}.jpg", seed=i)
    db = root / "db"
    model = f"local-dir:{tiny_model_dir}"
    saved = dict(chroma_store.HNSW_CONFIG)
    chroma_store.HNSW_CONFIG.update(sync_threshold=8, batch_size=8)
    try:
        summary = _engine(db, model).index([photos])
    finally:
        chroma_store.HNSW_CONFIG.clear()
        chroma_store.HNSW_CONFIG.update(saved)
    assert summary.new == 40
    (segment,) = [p for p in db.iterdir() if p.is_dir()]
    assert (segment / "data_level0.bin").stat().st_size > 0
    return photos, db


def _segment(db: Path) -> Path:
    (segment,) = [p for p in db.iterdir() if p.is_dir() and (p / "header.bin").exists()]
    return segment


def _garble(path: Path, seed: int = 0) -> None:
    """Random bytes over the middle of a file (all of it when small), size kept."""
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    start = len(data) // 4 if len(data) > 400 else 0
    end = len(data) * 3 // 4 if len(data) > 400 else len(data)
    data[start:end] = rng.integers(0, 256, end - start, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clipseek", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _copy(library: tuple[Path, Path], tmp_path: Path) -> Path:
    db = tmp_path / "db"
    shutil.copytree(library[1], db)
    return db


def test_a_healthy_index_checks_clean(library: tuple[Path, Path], tmp_path: Path) -> None:
    db = _copy(library, tmp_path)
    report = check(Store(db, create=False))
    assert report.healthy, report.problems
    assert report.records == report.found_self == 40
    assert "healthy" in report.sentence()


def test_garbage_in_data_level0_never_crashes_a_command_and_repair_recovers(
    library: tuple[Path, Path], tmp_path: Path, tiny_model: str
) -> None:
    """Garbage over the neighbour links used to crash every command (exit 139)."""
    photos, _ = library
    db = _copy(library, tmp_path)
    _garble(_segment(db) / "data_level0.bin")
    env = cli_env(tmp_path, tiny_model, db)
    for args in (["query", "a photo", "--top-k", "3"], ["index", str(photos)], ["check"]):
        result = _run(env, *args)
        assert result.returncode == 1, (args, result.returncode, result.stderr[-2000:])
        assert "Traceback" not in result.stderr, (args, result.stderr)
        assert "damaged" in result.stderr and "data_level0.bin" in result.stderr, result.stderr
    assert "clipseek repair" in result.stderr
    result = _run(env, "info")
    assert result.returncode in (0, 1) and "Traceback" not in result.stderr, result.stderr

    fixed = _run(env, "repair")
    assert fixed.returncode == 0, fixed.stderr
    text = " ".join(fixed.stdout.split())
    assert "Repaired" in text and "moved to" in text, text
    moved = [p for p in tmp_path.iterdir() if p.name.startswith("db.damaged-")]
    assert len(moved) == 1 and (moved[0] / "chroma.sqlite3").exists()  # nothing deleted
    assert check(Store(db, create=False)).healthy
    # What survived is back; what lost its vector is embedded again by the next run.
    again = _engine(db, tiny_model).index([photos])
    assert again.new + again.unchanged == 40 and again.removed == 0
    assert check(Store(db, create=False)).healthy
    result = _run(env, "query", "a photo", "--top-k", "3")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", ["header.bin", "link_lists.bin", "length.bin"])
def test_garbage_in_other_vector_files_is_found_and_repaired(
    library: tuple[Path, Path], tmp_path: Path, tiny_model: str, name: str
) -> None:
    photos, _ = library
    db = _copy(library, tmp_path)
    _garble(_segment(db) / name)
    report = check(Store(db, create=False))
    assert not report.healthy and report.repairable
    assert "clipseek repair" in report.sentence()
    if name != "length.bin":  # a search does not read the stored norms
        with pytest.raises(DamagedIndexError, match="damaged"):
            _engine(db, tiny_model).search("a photo", 3)
    result = repair(Store(db))
    assert result is not None and result.moved_to and Path(result.moved_to).is_dir()
    assert result.after is not None and result.after.healthy, result.after.problems
    assert result.restored + result.dropped == 40
    again = _engine(db, tiny_model).index([photos])
    assert again.new == result.dropped and again.unchanged == result.restored
    assert check(Store(db, create=False)).healthy
    assert len(_engine(db, tiny_model).search("a photo", 3).results) == 3


def test_repair_of_a_healthy_index_changes_nothing(
    library: tuple[Path, Path], tmp_path: Path
) -> None:
    db = _copy(library, tmp_path)
    assert repair(Store(db)) is None
    assert not [p for p in tmp_path.iterdir() if ".damaged-" in p.name]


def test_rebuild_moves_a_garbled_index_aside_and_starts_over(
    library: tuple[Path, Path], tmp_path: Path, tiny_model: str
) -> None:
    photos, _ = library
    db = _copy(library, tmp_path)
    _garble(_segment(db) / "data_level0.bin")
    result = _run(cli_env(tmp_path, tiny_model, db), "index", "--rebuild", str(photos))
    assert result.returncode == 0, result.stderr
    assert "moved to" in " ".join(result.stderr.split())
    assert check(Store(db, create=False)).healthy
