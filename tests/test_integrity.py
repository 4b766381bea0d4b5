"""Checking and repairing an index without the model, damaged vector files that must not
crash any command, one-to-one folder keys, and the ctime/inode change check.

The damage tests run each command as a real process: a crash inside Chroma's native
code kills the process (exit 139), which an in-process runner could not survive.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clipseek.config import Settings
from clipseek.engine import Engine
from clipseek.errors import DamagedIndexError
from clipseek.store import Store, chroma, image_index
from clipseek.store import records as chroma_store
from clipseek.store.repair import check, read_stored, repair
from tests.support.files import file_hashes
from tests.support.pictures import make_photo
from tests.support.processes import cli_env

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


@pytest.mark.slow  # check and repair run in a child process
def test_a_healthy_index_checks_clean(library: tuple[Path, Path], tmp_path: Path) -> None:
    db = _copy(library, tmp_path)
    report = check(Store(db, create=False))
    assert report.healthy, report.problems
    assert report.records == report.found_self == 40
    assert "healthy" in report.sentence()


def _state(folder: Path) -> list[tuple[str, str]]:
    return file_hashes(folder, skip=("clipseek-data.lock", "clipseek-writer.lock"))


@pytest.mark.slow  # check, repair or clipseek in a child process
def test_check_is_a_reader_that_never_writes_the_index(
    library: tuple[Path, Path], tmp_path: Path
) -> None:
    """Issue 25, item 4: `check` rewrote chroma.sqlite3, data_level0.bin and length.bin
    (its self-search opened Chroma on the index itself), so on a read-only mount it called
    a healthy index damaged, and beside a running index it saw a writer's work in flight."""
    db = _copy(library, tmp_path)
    before = _state(db)
    report = check(Store(db, create=False, reader=True))
    assert report.healthy and report.records == report.found_self == 40, report.problems
    assert _state(db) == before


@pytest.mark.slow  # check and repair run in a child process
def test_garbage_in_data_level0_never_crashes_a_command_and_repair_recovers(
    library: tuple[Path, Path], tmp_path: Path, tiny_model: str
) -> None:
    """Garbage over the neighbour links used to crash every command (exit 139)."""
    photos, _ = library
    db = _copy(library, tmp_path)
    _garble(_segment(db) / "data_level0.bin")
    env = cli_env(tmp_path, tiny_model, db)
    # The vector cache holds the vectors as written, so a query answers from it...
    cached = _run(env, "query", "a photo", "--top-k", "3")
    assert cached.returncode == 0 and "Traceback" not in cached.stderr, cached.stderr
    # ...and without it the garbage is named, never ranked.
    for part in db.glob("clipseek-vectors-*"):
        part.unlink()
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
    assert len(_engine(db, tiny_model).search("a photo", 3).results) == 3


def test_a_writer_skips_reading_links_it_checked_until_their_files_change(
    library: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unchanged re-index notes the graphs whose links passed (it holds the writer
    lock); neither it nor a reader reads them again while their files are the same, and
    garbage written over the links afterwards is found all the same. Readers never write
    the note."""
    from clipseek.store import integrity

    db = _copy(library, tmp_path)
    note = db / integrity.GRAPH_CHECKED
    note.unlink(missing_ok=True)  # the index run that built it noted its graph: start without
    reads: list[Path] = []
    real = integrity.graph_damage

    def counted(seg: Path, header: bytes) -> str | None:
        reads.append(seg)
        return real(seg, header)

    monkeypatch.setattr(integrity, "graph_damage", counted)
    assert integrity.find_damage(db, notes="read") is None and len(reads) == 1
    assert not note.exists()  # a reader writes nothing
    assert integrity.find_damage(db, notes="keep") is None and len(reads) == 2
    assert set(json.loads(note.read_text())["segments"]) == {_segment(db).name}
    noted = json.loads(note.read_text())["segments"]
    gone = {"identity": [[1]], "crc32": [1]}
    note.write_text(json.dumps({"version": 2, "segments": {**noted, "gone-segment": gone}}))
    assert integrity.find_damage(db, notes="keep") is None and len(reads) == 2
    assert json.loads(note.read_text())["segments"] == noted  # a segment gone is forgotten
    assert integrity.find_damage(db, notes="read") is None and len(reads) == 2
    assert integrity.find_damage(db) is None and len(reads) == 3  # "ignore" reads them

    _garble(_segment(db) / "data_level0.bin")  # same size: the ctime tells
    for notes in ("read", "keep"):
        problem = integrity.find_damage(db, notes=notes)
        assert problem is not None and "data_level0.bin has links out of range" in problem
    assert len(reads) == 5
    note.write_text("{not json")  # a damaged note only costs a check
    assert integrity.find_damage(db, notes="keep") == problem and len(reads) == 6

    # A note of the old kind (identity only, no hash of the contents) vouches for nothing.
    seg = _segment(db)
    identity = integrity._GraphChecks.identity(seg)
    note.write_text(json.dumps({"version": 1, "segments": {seg.name: identity}}))
    assert integrity.find_damage(db, notes="read") == problem and len(reads) == 7


@pytest.mark.slow  # check and repair run in a child process
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


def _truncate(seg: Path, name: str) -> None:
    """Cut 4 bytes off a vector file, from what its header says it holds (the vector
    and norm files are allocated for more elements than they have; cutting spare room is
    harmless)."""
    from clipseek.store.chroma_format import parse_header

    path = seg / name
    size = path.stat().st_size
    head = parse_header((seg / "header.bin").read_bytes())
    assert not isinstance(head, str)
    if name == "data_level0.bin":
        size = head.count * head.per_element
    elif name == "length.bin":
        size = head.count * 4
    os.truncate(path, size - 4)


@pytest.mark.slow  # check, repair or clipseek in a child process
@pytest.mark.parametrize(
    "name", ["link_lists.bin", "data_level0.bin", "length.bin", "index_metadata.pickle"]
)
def test_a_truncated_vector_file_is_named_and_repair_recovers(
    library: tuple[Path, Path], tmp_path: Path, tiny_model: str, name: str
) -> None:
    """Issue 25, item 3: four bytes cut off link_lists.bin made every command, repair
    and `index --rebuild` included, fail with "IndexError: index 4177 is out of bounds"."""
    photos, _ = library
    db = _copy(library, tmp_path)
    _truncate(_segment(db), name)
    report = check(Store(db, create=False))
    assert not report.healthy and report.repairable, report.problems
    assert name in report.problems[0], report.problems
    with pytest.raises(DamagedIndexError, match=name.replace(".", r"\.")):
        _engine(db, tiny_model).search("a photo", 3)
    result = repair(Store(db))
    assert result is not None and result.after is not None and result.after.healthy
    assert result.restored + result.dropped == 40
    again = _engine(db, tiny_model).index([photos])
    assert again.new == result.dropped and again.unchanged == result.restored


def _rot_behind_the_note(db: Path, name: str, data: bytes, offset: int) -> None:
    """Change bytes of a graph file as the disk itself would: the note the writer left still
    names the files' size, mtime, ctime and inode (rewritten here to the new ctime, which no
    program can set back, but bit rot never changes)."""
    from clipseek.fileio import identity
    from clipseek.store import integrity

    seg = _segment(db)
    path = seg / name
    before = [list(identity(p)) for p in sorted(seg.iterdir())]
    st = path.stat()
    with path.open("r+b") as fh:
        fh.seek(offset)
        fh.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = [list(identity(p)) for p in sorted(seg.iterdir())]
    note = db / integrity.GRAPH_CHECKED
    text = note.read_text()
    for old, new in zip(before, after, strict=True):
        text = text.replace(json.dumps(old), json.dumps(new))
    note.write_text(text)


_CHROMA_SEARCH = (
    "import sys; from clipseek.config import Settings; from clipseek.engine import Engine; "
    "Engine(Settings(db=sys.argv[1], model=sys.argv[2], device='cpu', precision='fp32'))"
    ".search('a photo', 3)"
)


@pytest.mark.slow  # check, repair or clipseek in a child process
def test_bit_rot_behind_a_graph_note_is_found_and_crashes_nothing(
    library: tuple[Path, Path], tmp_path: Path, tiny_model: str
) -> None:
    """Issue 25, item 5: links garbled behind a note that matches the files' identity
    crashed the Chroma path (SIGSEGV) and left `index` saying "unchanged"."""
    from clipseek.store import integrity
    from clipseek.store.chroma_format import parse_header

    photos, _ = library
    db = _copy(library, tmp_path)
    env = cli_env(tmp_path, tiny_model, db)
    assert _run(env, "index", str(photos)).returncode == 0  # a writer notes the graph
    assert (db / integrity.GRAPH_CHECKED).exists()
    seg = _segment(db)
    head = parse_header((seg / "header.bin").read_bytes())
    assert not isinstance(head, str)
    # Every level-0 link of the first elements names an element far past the end.
    links = np.full(head.max_m0, 0x7FFF_FFF0, dtype="<u4").tobytes()
    for element in range(head.count):
        _rot_behind_the_note(db, "data_level0.bin", links, element * head.per_element + 4)
    assert integrity.find_damage(db, notes="read") == (
        f"{seg.name}/data_level0.bin has links out of range"
    )
    search = subprocess.run(
        [sys.executable, "-c", _CHROMA_SEARCH, str(db), tiny_model],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert search.returncode == 1, (search.returncode, search.stderr[-2000:])
    assert "data_level0.bin has links out of range" in search.stderr
    result = _run(env, "index", str(photos))
    assert result.returncode == 1 and "unchanged" not in result.stdout, result.stdout
    assert "data_level0.bin" in result.stderr and "clipseek repair" in result.stderr
    assert "--rebuild" not in result.stderr  # repair suffices
    assert _run(env, "repair").returncode == 0
    assert _run(env, "index", str(photos)).returncode == 0


@pytest.mark.slow  # check, repair or clipseek in a child process
def test_a_header_of_an_unknown_version_is_damage_index_notices(
    library: tuple[Path, Path], tmp_path: Path, tiny_model: str
) -> None:
    """Issue 25, item 5: a header.bin of another version was invisible to `index` (exit 0,
    "unchanged") while every query failed."""
    import struct

    photos, _ = library
    db = _copy(library, tmp_path)
    env = cli_env(tmp_path, tiny_model, db)
    assert _run(env, "index", str(photos)).returncode == 0
    header = _segment(db) / "header.bin"
    header.write_bytes(struct.pack("<I", 7) + header.read_bytes()[4:])
    result = _run(env, "index", str(photos))
    assert result.returncode == 1, result.stdout
    text = " ".join(result.stderr.split())
    assert "header.bin has an unknown version (7)" in text and "clipseek repair" in text, text
    fixed = repair(Store(db))
    assert fixed is not None and fixed.after is not None and fixed.after.healthy
    again = _engine(db, tiny_model).index([photos])
    assert again.new + again.unchanged == 40 and again.removed == 0


@pytest.mark.slow  # check, repair or clipseek in a child process
@pytest.mark.parametrize("value", [463.6, float("nan")])
def test_a_garbled_stored_vector_is_ranked_by_no_face_and_repair_fixes_it(
    library: tuple[Path, Path], tmp_path: Path, tiny_model: str, value: float
) -> None:
    """Issue 25, item 2: one element's vector overwritten with huge values ranked first for
    any text (score 463.6), with NaN first with score 0.0, and `index` said unchanged."""
    from clipseek.store.chroma_format import parse_header

    photos, _ = library
    db = _copy(library, tmp_path)
    seg = _segment(db)
    head = parse_header((seg / "header.bin").read_bytes())
    assert not isinstance(head, str)
    with (seg / "data_level0.bin").open("r+b") as fh:
        fh.seek(5 * head.per_element + head.data_offset)
        fh.write(np.full(head.dim, value, dtype="<f4").tobytes())
    (garbled,) = [
        path
        for col in read_stored(db)
        for id_, vec in col.vectors.items()
        if not col.is_failures and not np.isclose(np.linalg.norm(vec), 1.0)
        for path in [col.records[id_]["path"]]
    ]
    report = check(Store(db, create=False))
    assert not report.healthy and report.repairable
    assert any(garbled in p for p in report.problems), report.problems
    settings = Settings(db=str(db), model=tiny_model, device="cpu", precision="fp32")
    # The vector cache holds the vectors as written: the query's path answers from it, and
    # every score is a cosine...
    cached = Engine(settings, direct=True).search("a photo", 40).results
    assert len(cached) == 40 and all(-1.0 <= r.score <= 1.0 for r in cached)
    for part in db.glob("clipseek-vectors-*"):
        part.unlink()
    # ...and without it, serve's path (Chroma) and the query's (the files) name the damage.
    for direct in (False, True):
        engine = Engine(settings, direct=direct)
        with pytest.raises(DamagedIndexError, match="clipseek repair"):
            engine.search("a photo", 3)
    env = cli_env(tmp_path, tiny_model, db)
    result = _run(env, "index", str(photos))
    assert result.returncode == 1 and "data_level0.bin" in result.stderr, result.stderr
    fixed = repair(Store(db))
    assert fixed is not None and fixed.after is not None and fixed.after.healthy
    assert (fixed.restored, fixed.dropped) == (39, 1)
    again = _engine(db, tiny_model).index([photos])
    assert (again.new, again.unchanged) == (1, 39)
    results = _engine(db, tiny_model).search("a photo", 40).results
    assert len(results) == 40 and all(-1.0 <= r.score <= 1.0 for r in results)


@pytest.mark.slow  # check and repair run in a child process
def test_a_repair_that_dies_midway_leaves_the_index_as_it_found_it(
    library: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The repaired copy is written beside the index and swapped in when complete: a repair
    killed while writing it (here: failing on the first collection) changes nothing, and
    readers never see a folder without the index (they used to, for the whole rebuild)."""
    from clipseek.store import repair as repair_module

    db = _copy(library, tmp_path)
    _garble(_segment(db) / "link_lists.bin")
    before = sorted((p.name, p.stat().st_size) for p in db.rglob("*") if p.is_file())
    real_restore = repair_module._restore

    def dies(store, *args, **kwargs):
        assert Path(store.location) != db  # the copy is written elsewhere
        raise KeyboardInterrupt

    monkeypatch.setattr(repair_module, "_restore", dies)
    with pytest.raises(KeyboardInterrupt):
        repair(Store(db))
    after = sorted((p.name, p.stat().st_size) for p in db.rglob("*") if p.is_file())
    assert after == before
    assert not [p for p in tmp_path.iterdir() if ".damaged-" in p.name]
    # The next repair finishes, and clears what the killed one left beside the index.
    monkeypatch.setattr(repair_module, "_restore", real_restore)
    result = repair(Store(db))
    assert result is not None and result.after is not None and result.after.healthy
    assert result.restored + result.dropped == 40
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".repairing")] == []


@pytest.mark.slow  # check, repair or clipseek in a child process
def test_repairs_keep_a_bounded_number_of_old_copies_and_say_where(
    library: tuple[Path, Path], tmp_path: Path
) -> None:
    """Issue 25, item 10: interrupted runs and repairs left a copy of the whole index each
    time (9 in one afternoon)."""
    db = _copy(library, tmp_path)
    older = [tmp_path / f"db.damaged-2020010{i}-120000" for i in range(1, 5)]
    for folder in older:
        folder.mkdir()
        (folder / "chroma.sqlite3").write_bytes(b"old")
    (tmp_path / "db.damaged-notes").mkdir()  # not a copy clipseek made: left alone
    result = repair(Store(db), force=True)
    assert result is not None and result.moved_to is not None
    kept = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("db.damaged-2"))
    assert kept == sorted([older[2].name, older[3].name, Path(result.moved_to).name])
    assert (tmp_path / "db.damaged-notes").is_dir()
    text = result.sentence()
    assert result.moved_to in text and "3 newest" in text and "db.damaged-*" in text, text


@pytest.mark.slow  # check and repair run in a child process
def test_repair_of_a_healthy_index_changes_nothing(
    library: tuple[Path, Path], tmp_path: Path
) -> None:
    db = _copy(library, tmp_path)
    assert repair(Store(db)) is None
    assert not [p for p in tmp_path.iterdir() if ".damaged-" in p.name]


@pytest.mark.slow  # check and repair run in a child process
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


# --------------------------------------------------------------------------- interrupted runs


@pytest.mark.slow  # check and repair run in a child process
def test_a_resumed_run_checks_the_index_and_repairs_an_unfindable_vector(
    engine: Engine, tmp_path: Path, decode_counter: list[str]
) -> None:
    """A record listed in the database whose vector is gone (issue 10, item 3) is found
    by the self-check that follows an interrupted run, and the same run re-embeds it."""
    import sqlite3

    from clipseek.indexing.events import Notice
    from clipseek.store.keys import path_id
    from clipseek.store.repair import RUN_MARKER

    photos = tmp_path / "photos"
    for i in range(6):
        make_photo(photos / f"p{i}.jpg", seed=i)
    engine.index([photos])
    db = Path(engine.store.location)
    assert not (db / RUN_MARKER).exists()  # a clean end leaves no marker
    lost = path_id(str(photos / "p3.jpg"))
    con = sqlite3.connect(db / "chroma.sqlite3")
    with con:
        con.execute("DELETE FROM embeddings_queue WHERE id = ? AND vector IS NOT NULL", (lost,))
    con.close()
    report = check(Store(db, create=False))
    assert not report.healthy and "1 of 6 records have no stored vector" in report.problems[0]
    (db / RUN_MARKER).write_text("{}")  # what a killed run leaves behind

    notices: list[str] = []
    decode_counter.clear()
    summary = Engine(engine.settings).index(
        [photos], on_event=lambda e: notices.append(e.message) if isinstance(e, Notice) else None
    )
    text = " ".join(notices)
    assert "interrupted" in text and "no stored vector" in text and "Repaired" in text, text
    assert decode_counter == [str(photos / "p3.jpg")]  # only the lost one went to the model
    assert summary.new == 1 and summary.unchanged == 5
    assert check(Store(db, create=False)).healthy
    assert not (db / RUN_MARKER).exists()


@pytest.mark.slow  # a child process
def test_writes_still_only_in_chromas_log_are_not_damage(engine: Engine, tmp_path: Path) -> None:
    """Issue 25, item 10: a run cut short between Chroma's log and its metadata left
    vectors "that belong to no record" (and deletes whose records "have no vector"), and
    the next run repaired an index Chroma would have completed by itself."""
    import sqlite3

    photos = tmp_path / "photos"
    for i in range(6):
        make_photo(photos / f"p{i}.jpg", seed=i)
    engine.index([photos])
    db = Path(engine.store.location)
    con = sqlite3.connect(db / "chroma.sqlite3")
    with con:
        (segment,) = con.execute(
            "SELECT s.id FROM segments s JOIN collections c ON c.id = s.collection "
            "WHERE s.scope = 'METADATA' AND c.name LIKE 'clipseek_%' "
            "AND c.name NOT LIKE 'clipseek_failures%'"
        ).fetchone()
        seq, record = con.execute(
            "SELECT seq_id, id FROM embeddings_queue WHERE vector IS NOT NULL "
            "ORDER BY seq_id DESC LIMIT 1"
        ).fetchone()
        # The last add, written to the log but not yet applied to the metadata tables.
        (rowid,) = con.execute(
            "SELECT id FROM embeddings WHERE embedding_id = ?", (record,)
        ).fetchone()
        con.execute("DELETE FROM embedding_metadata WHERE id = ?", (rowid,))
        con.execute("DELETE FROM embedding_metadata_array WHERE id = ?", (rowid,))
        con.execute("DELETE FROM embeddings WHERE id = ?", (rowid,))
        con.execute("UPDATE max_seq_id SET seq_id = ? WHERE segment_id = ?", (seq - 1, segment))
    con.close()
    report = check(Store(db, create=False))
    assert report.healthy, report.problems
    assert repair(Store(db)) is None  # nothing to repair
    assert not [p for p in tmp_path.iterdir() if ".damaged-" in p.name]


# --------------------------------------------------------------------------- one-to-one names


def _colliding_folders(root: Path) -> tuple[str, str]:
    """A folder literally named ``caf\\xe9`` and one named with the byte 0xE9."""
    literal = os.path.join(str(root), "caf\\xe9")
    raw = os.fsdecode(os.path.join(os.fsencode(str(root)), b"caf\xe9"))
    for folder, first_seed in ((literal, 0), (raw, 10)):
        for i in range(3):
            make_photo(Path(folder) / f"p{i}.jpg", seed=first_seed + i)
    assert sorted(os.listdir(os.fsencode(str(root)))) == [b"caf\\xe9", b"caf\xe9"]
    return literal, raw


def _paths(hits: object) -> set[str]:
    return {r.path for r in hits.results}  # type: ignore[attr-defined]


@pytest.mark.slow  # check and repair run in a child process
def test_a_backslash_folder_and_a_non_utf8_folder_never_share_a_key(
    engine: Engine, tmp_path: Path
) -> None:
    from clipseek.store.keys import ancestors, meta_text

    literal, raw = _colliding_folders(tmp_path / "photos")
    assert meta_text(literal) != meta_text(raw)
    assert meta_text(literal, 1) == meta_text(raw, 1)  # the old rule's collision
    assert ancestors(os.path.join(literal, "x.jpg"))[0] != ancestors(os.path.join(raw, "x.jpg"))[0]

    (Path(literal) / "broken.jpg").write_text("not an image")  # a failure record, escaped too
    engine.index([raw])
    summary = engine.index([literal])
    assert (summary.new, summary.removed) == (3, 0)  # used to remove the other's three
    assert len(summary.failed) == 1
    summary = engine.index([raw])
    assert (summary.unchanged, summary.removed) == (3, 0)
    assert _paths(engine.search("a photo", 10, in_dir=literal)) == {
        os.path.join(literal, f"p{i}.jpg") for i in range(3)
    }
    assert _paths(engine.search("a photo", 10, in_dir=raw)) == {
        os.path.join(raw, f"p{i}.jpg") for i in range(3)
    }
    assert check(Store(engine.store.location, create=False)).healthy


@pytest.mark.slow  # check and repair run in a child process
def test_an_index_with_the_old_keys_is_read_as_it_is_and_migrated_by_the_next_run(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clipseek.store import keys

    root = tmp_path / "photos"
    literal, raw = _colliding_folders(root)
    with monkeypatch.context() as old:  # what clipseek before key schema 2 wrote
        old.setattr(chroma, "SCHEMA_VERSION", 1)
        for module in (chroma_store, image_index):
            old.setattr(module, "SCHEMA_VERSION", 1)
            old.setattr(module, "path_to_meta", lambda p: keys.path_to_meta(p, 1))
            old.setattr(module, "ancestors", lambda p: keys.ancestors(p, 1))
        engine.index([root])
    db = Path(engine.store.location)
    assert read_stored(db)[0].metadata["clipseek_schema"] == 1
    assert check(Store(db, create=False)).healthy  # consistent under its own rule

    reader = Engine(engine.settings)
    both = _paths(reader.search("a photo", 10, in_dir=literal))
    assert len(both) == 6  # the old rule cannot tell the two apart, but reading works...
    assert read_stored(db)[0].metadata["clipseek_schema"] == 1  # ...and writes nothing

    summary = Engine(engine.settings).index([root])
    assert summary.unchanged == 6 and summary.removed == 0
    assert read_stored(db)[0].metadata["clipseek_schema"] == chroma_store.SCHEMA_VERSION
    fresh = Engine(engine.settings)
    assert len(_paths(fresh.search("a photo", 10, in_dir=literal))) == 3
    assert len(_paths(fresh.search("a photo", 10, in_dir=raw))) == 3
    assert fresh.index([literal]).removed == 0
    assert check(Store(db, create=False)).healthy


# --------------------------------------------------------------------------- ctime and inode


def test_a_replaced_file_with_the_same_size_and_mtime_is_embedded_again(
    engine: Engine, tmp_path: Path, decode_counter: list[str]
) -> None:
    photos = tmp_path / "photos"
    target = make_photo(photos / "a.bmp", seed=1, fmt="BMP")
    other = make_photo(tmp_path / "other.bmp", seed=2, fmt="BMP")
    make_photo(photos / "b.bmp", seed=3, fmt="BMP")
    assert target.stat().st_size == other.stat().st_size
    engine.index([photos])
    before = engine.open_index().get([_id(target)])[_id(target)][0]
    st = target.stat()

    target.write_bytes(other.read_bytes())  # same size, new bytes...
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # ...and the old mtime
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    decode_counter.clear()
    summary = Engine(engine.settings).index([photos])
    assert summary.updated == 1 and summary.reused == 0 and summary.unchanged == 1
    assert decode_counter == [str(target)]
    after = Engine(engine.settings).open_index().get([_id(target)])[_id(target)][0]
    assert not np.allclose(before, after)


def test_a_touched_file_keeps_its_vector_without_a_model_run(
    engine: Engine, tmp_path: Path, decode_counter: list[str]
) -> None:
    photos = tmp_path / "photos"
    target = make_photo(photos / "a.jpg", seed=1)
    make_photo(photos / "b.jpg", seed=2)
    engine.index([photos])
    before = engine.open_index().get([_id(target)])[_id(target)][0]
    st = target.stat()
    os.chmod(target, 0o600)  # a new ctime, the same bytes, size and mtime
    assert target.stat().st_ctime_ns != st.st_ctime_ns or target.stat().st_mode != st.st_mode

    decode_counter.clear()
    summary = Engine(engine.settings).index([photos])
    assert decode_counter == [] and not summary.model_loaded
    assert summary.reused == 1 and summary.unchanged == 1
    after = Engine(engine.settings).open_index().get([_id(target)])[_id(target)][0]
    assert np.allclose(before, after)
    summary = Engine(engine.settings).index([photos])  # the new ctime is now stored
    assert summary.unchanged == 2 and summary.reused == 0


def _id(path: Path) -> str:
    from clipseek.store.keys import path_id

    return path_id(str(path))


def test_a_renamed_folder_of_same_sized_files_gives_each_file_its_own_vector(
    engine: Engine, tmp_path: Path, decode_counter: list[str]
) -> None:
    """Files of one size are matched by their hash, each to the record of its own bytes."""
    album = tmp_path / "photos" / "album"
    files = [make_photo(album / f"{i}.bmp", seed=10 + i, fmt="BMP") for i in range(6)]
    assert len({f.stat().st_size for f in files}) == 1
    engine.index([tmp_path / "photos"])
    index = engine.open_index()
    before = {f.name: index.get([_id(f)])[_id(f)][0] for f in files}
    assert not np.allclose(before["0.bmp"], before["1.bmp"])

    moved = album.rename(tmp_path / "photos" / "moved")
    decode_counter.clear()
    summary = Engine(engine.settings).index([tmp_path / "photos"])
    assert summary.reused == 6 and summary.embedded == 0 and decode_counter == []
    index = Engine(engine.settings).open_index()
    for name, vector in before.items():
        path = moved / name
        assert np.allclose(index.get([_id(path)])[_id(path)][0], vector), name
