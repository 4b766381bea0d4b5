from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from clipseek.engine import Engine
from clipseek.indexing import pipeline as ix
from clipseek.indexing.options import IndexOptions
from clipseek.store import path_id
from tests.support.pictures import make_photo


def stored_paths(engine: Engine) -> list[str]:
    index = engine.open_index()
    return sorted(e.path for e in index.entries().values())


def disk_images(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def test_first_run_indexes_everything_with_metadata(engine: Engine, photos: Path) -> None:
    events: list[object] = []
    summary = engine.index([photos], on_event=events.append)
    assert (summary.new, summary.updated, summary.unchanged, summary.removed) == (12, 0, 0, 0)
    assert summary.failed == []
    assert stored_paths(engine) == disk_images(photos)
    entry = engine.open_index().entries()[path_id(str(photos / "beach.jpg"))]
    assert entry.size == (photos / "beach.jpg").stat().st_size
    assert entry.mtime_ns == (photos / "beach.jpg").stat().st_mtime_ns
    assert entry.extra["width"] == 64 and entry.extra["height"] == 48
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "ScanProgress" and kinds[-1] == "IndexFinished"
    assert "PlanReady" in kinds and "BatchDone" in kinds
    done = [e for e in events if isinstance(e, ix.BatchDone)]
    assert done[-1].done == done[-1].total == 12
    assert engine.open_index().roots == [str(photos)]


def test_vectors_are_unit_float32_of_the_model_dim(engine: Engine, photos: Path) -> None:
    import numpy as np

    engine.index([photos])
    index = engine.open_index()
    got = index.get([path_id(str(photos / "city.png"))])
    ((vector, _meta),) = got.values()
    assert vector.dtype == np.float32 and vector.shape == (engine.model().dim,)
    assert float(np.linalg.norm(vector)) == pytest.approx(1.0, abs=1e-5)
    assert index.dim == engine.model().dim


def test_incremental_runs_touch_only_what_changed(
    engine: Engine, photos: Path, decode_counter: list[str]
) -> None:
    engine.index([photos])
    decode_counter.clear()

    # Unchanged: not opened again.
    again = engine.index([photos])
    assert (again.new, again.updated, again.unchanged, again.removed) == (0, 0, 12, 0)
    assert decode_counter == []

    # Add, modify content+mtime, touch mtime only, delete, rename.
    make_photo(photos / "new.png", seed=99)
    make_photo(photos / "city.png", size=(90, 60), seed=42)
    st = (photos / "cat.webp").stat()
    os.utime(photos / "cat.webp", ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    (photos / "dog.bmp").unlink()
    (photos / "sub" / "a.jpg").rename(photos / "sub" / "renamed.jpg")
    decode_counter.clear()

    summary = engine.index([photos])
    # Only new bytes are decoded: the touched cat.webp and the renamed a.jpg keep their
    # stored vectors (same size and content hash).
    assert sorted(os.path.basename(p) for p in decode_counter) == ["city.png", "new.png"]
    assert summary.reused == 2 and summary.embedded == 2
    assert summary.updated == 2  # city (content) and cat (mtime)
    assert summary.removed == 2  # dog deleted, a.jpg renamed away
    assert summary.new + summary.updated + summary.unchanged == len(disk_images(photos))
    assert stored_paths(engine) == disk_images(photos)
    assert engine.open_index().count() == len(disk_images(photos))  # no duplicates


def test_nothing_to_do_means_no_model_load(settings, photos: Path) -> None:
    Engine(settings).index([photos])
    loads: list[str] = []

    def loader(spec, device, precision):
        loads.append(spec.name)
        raise AssertionError("the model must not load when nothing changed")

    summary = Engine(settings, model_loader=loader).index([photos])
    assert summary.unchanged == 12 and not summary.model_loaded and loads == []


def test_bad_files_are_named_and_skipped(
    engine: Engine, photos: Path, decode_counter: list[str]
) -> None:
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "notes.png").write_text("not an image at all")
    good = (photos / "beach.jpg").read_bytes()
    (photos / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (photos / "random.webp").write_bytes(os.urandom(2048))
    events: list[object] = []
    summary = engine.index([photos], on_event=events.append)
    reasons = {os.path.basename(f.path): f.reason for f in summary.failed}
    assert reasons == {
        "empty.jpg": "empty file (0 bytes)",
        "notes.png": "a text file, not an image",
        "truncated.jpg": "image file is truncated",
        "random.webp": "not a recognised image format",
    }
    assert {os.path.basename(e.path) for e in events if isinstance(e, ix.FileFailed)} == set(
        reasons
    )
    assert summary.new == 12
    assert len(stored_paths(engine)) == 12

    # Still broken and untouched: reported again without being decoded again.
    decode_counter.clear()
    again = engine.index([photos])
    assert {os.path.basename(f.path) for f in again.failed} == set(reasons)
    assert decode_counter == []
    # Fixed: indexed on the next run.
    make_photo(photos / "notes.png", seed=5)
    fixed = engine.index([photos])
    assert fixed.new == 1 and "notes.png" not in {os.path.basename(f.path) for f in fixed.failed}


def test_changed_file_that_became_unreadable_loses_its_old_vector(
    engine: Engine, photos: Path
) -> None:
    engine.index([photos])
    (photos / "city.png").write_text("overwritten by a text editor")
    summary = engine.index([photos])
    assert [os.path.basename(f.path) for f in summary.failed] == ["city.png"]
    assert str(photos / "city.png") not in stored_paths(engine)


def test_batches_are_written_as_they_are_embedded(
    engine: Engine, photos: Path, monkeypatch
) -> None:
    from clipseek.store import ImageIndex

    writes: list[int] = []
    real = ImageIndex.upsert

    def spy(self, records):
        writes.append(len(records))
        return real(self, records)

    monkeypatch.setattr(ImageIndex, "upsert", spy)
    engine.index([photos], IndexOptions(batch_size=5))
    assert writes == [5, 5, 2]


def test_the_summary_counts_the_time_spent_writing(
    engine: Engine, photos: Path, monkeypatch, caplog
) -> None:
    """write_seconds is the store's share of a run (a first index on a CPU writes inline):
    each write's time, and nothing else, on a clock only the writer reads."""
    import types

    from clipseek.indexing import writer as writer_module
    from clipseek.store import ImageIndex

    clock = [0.0]
    monkeypatch.setattr(writer_module, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    real = ImageIndex.upsert

    def slow(self, records):
        clock[0] += 0.25
        return real(self, records)

    monkeypatch.setattr(ImageIndex, "upsert", slow)
    with caplog.at_level("DEBUG", logger="clipseek"):
        summary = engine.index([photos], IndexOptions(batch_size=5))
    assert summary.write_seconds == pytest.approx(0.75)  # three writes: 5, 5 and 2 pictures
    # --debug says it (benchmarks/bench_index.py reads the line)
    assert "writing to the index took 0.75 s of the run's" in caplog.text


def test_upserts_are_chunked_to_the_store_limit(engine: Engine, photos: Path, monkeypatch) -> None:
    from chromadb.api.models.Collection import Collection

    from clipseek.store import ImageIndex

    calls: list[int] = []
    real_upsert = Collection.upsert

    def counting(self, ids, **kwargs):
        calls.append(len(ids))
        return real_upsert(self, ids, **kwargs)

    monkeypatch.setattr(ImageIndex, "_max_batch", lambda self: 3)
    monkeypatch.setattr(Collection, "upsert", counting)
    engine.index([photos], IndexOptions(batch_size=8))
    assert calls == [3, 3, 2, 3, 1]
    assert len(stored_paths(engine)) == 12


def test_rebuild_embeds_everything_again(engine: Engine, photos: Path, decode_counter) -> None:
    engine.index([photos])
    decode_counter.clear()
    summary = engine.index([photos], IndexOptions(rebuild=True))
    assert summary.updated == 12 and summary.unchanged == 0
    assert len(decode_counter) == 12
    assert stored_paths(engine) == disk_images(photos)


def test_two_roots_are_pruned_independently(engine: Engine, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for i in range(3):
        make_photo(a / f"{i}.png", seed=i)
        make_photo(b / f"{i}.png", seed=10 + i)
    engine.index([a, b])
    (a / "0.png").unlink()
    summary = engine.index([a])  # indexing only a must not prune b
    assert summary.removed == 1
    assert len(stored_paths(engine)) == 5
    assert sorted(engine.open_index().roots) == sorted([str(a), str(b)])


def test_emptied_root_is_kept_as_a_likely_unmounted_drive(
    engine: Engine, photos: Path, tmp_path: Path
) -> None:
    engine.index([photos])
    backup = tmp_path / "elsewhere"
    shutil.move(str(photos), backup)
    photos.mkdir()
    events: list[object] = []
    summary = engine.index([photos], on_event=events.append)
    assert summary.removed == 0 and len(stored_paths(engine)) == 12
    assert any(isinstance(e, ix.Notice) and "kept them" in e.message for e in events)
    assert engine.index([photos], IndexOptions(rebuild=True)).removed == 12


@pytest.mark.slow  # after a stopped run the index is checked in a child process
def test_missing_root_is_an_error_and_changes_nothing(
    engine: Engine, photos: Path, tmp_path: Path
) -> None:
    from clipseek.errors import ClipseekError

    engine.index([photos])
    with pytest.raises(ClipseekError, match="does not exist"):
        engine.index([tmp_path / "nope"])
    with pytest.raises(ClipseekError, match="is not a folder"):
        engine.index([photos / "beach.jpg"])
    assert len(stored_paths(engine)) == 12


@pytest.mark.slow  # after a stopped run the index is checked in a child process
def test_cancel_stops_after_the_batch_in_flight(engine: Engine, photos: Path) -> None:
    import threading

    cancel = threading.Event()

    def on_event(event):
        if isinstance(event, ix.BatchDone):
            cancel.set()

    summary = engine.index([photos], IndexOptions(batch_size=4), on_event=on_event, cancel=cancel)
    assert summary.cancelled and summary.new == 4
    assert len(stored_paths(engine)) == 4
    resumed = engine.index([photos])
    assert resumed.new == 8 and resumed.unchanged == 4
    assert stored_paths(engine) == disk_images(photos)


def test_each_model_gets_its_own_index(settings, photos: Path, tmp_path: Path) -> None:
    from clipseek.testing import build_tiny_model

    other = build_tiny_model(tmp_path / "other-model", seed=1)
    first = Engine(settings)
    first.index([photos])
    second = Engine(settings.with_overrides(model=f"local-dir:{other}"))
    second.index([photos])
    keys = {i.model_key for i in first.store.indexes()}
    assert keys == {first.spec.key, second.spec.key}
    assert all(i.count == 12 for i in first.store.indexes())


def test_unusual_image_kinds_index(engine: Engine, tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    root = tmp_path / "kinds"
    root.mkdir()
    Image.new("RGBA", (40, 30), (10, 200, 30, 128)).save(root / "rgba.png")
    pal = Image.new("P", (40, 30), 1)
    pal.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    pal.save(root / "palette.png", transparency=0)
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(root / "cmyk.jpg")
    Image.fromarray(np.full((30, 40), 40000, dtype=np.uint16)).save(root / "gray16.png")
    frames = [Image.new("RGB", (40, 30), c) for c in [(255, 0, 0), (0, 0, 255)]]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:])
    frames[0].save(root / "anim.webp", save_all=True, append_images=frames[1:])
    summary = engine.index([root])
    assert summary.failed == [] and summary.new == 6
    assert len(stored_paths(engine)) == 6
