"""The GPU-shaped pipeline, exercised on the CPU: decoder processes with shared memory,
writes behind the model, the per-device batch size and the background model load.

A GPU machine takes these paths by default; here they are switched on through
:class:`IndexOptions`, so they are tested wherever the suite runs.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from clipseek.config import load_settings
from clipseek.engine import Engine
from clipseek.errors import ClipseekError
from clipseek.indexing import pipeline as ix
from clipseek.indexing.options import IndexOptions

GPU_SHAPED = {"decode_processes": True, "write_behind": True, "decode_workers": 2}


def stored(engine: Engine) -> dict[str, np.ndarray]:
    index = engine.open_index()
    entries = index.entries()
    vectors = index.get(list(entries))
    return {entries[i].path: np.asarray(vectors[i][0]) for i in entries}


def disk_images(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


@pytest.mark.slow  # decoder processes
def test_processes_and_write_behind_store_what_threads_store(
    settings, photos: Path, tmp_path: Path
) -> None:
    threaded = Engine(settings)
    threaded.index([photos], IndexOptions(batch_size=4))
    expected = stored(threaded)

    # The same precision as ``settings`` (fp32): on a CPU with native bf16, auto means bf16.
    same = {"model": settings.model, "device": "cpu", "precision": settings.precision}
    other = Engine(load_settings({"db": str(tmp_path / "db2"), **same}))
    events: list[object] = []
    summary = other.index(
        [photos], IndexOptions(batch_size=4, **GPU_SHAPED), on_event=events.append
    )
    got = stored(other)
    assert summary.new == 12 and summary.model_batches == 3 and not summary.failed
    assert sorted(got) == sorted(expected) == disk_images(photos)
    for path, vector in expected.items():
        assert float(vector @ got[path]) > 0.99999
    done = [e for e in events if isinstance(e, ix.BatchDone)]
    assert [e.done for e in done] == [4, 8, 12] and done[-1].embedded == 12
    # Fingerprints come from the decoder processes too: a renamed copy is reused.
    (photos / "copy.jpg").write_bytes((photos / "beach.jpg").read_bytes())
    again = other.index([photos], IndexOptions(**GPU_SHAPED))
    assert again.new == 1 and again.reused == 1 and again.embedded == 0


@pytest.mark.slow  # decoder processes
def test_bad_files_fail_the_same_way_in_decoder_processes(engine: Engine, photos: Path) -> None:
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "notes.png").write_text("not an image at all")
    good = (photos / "beach.jpg").read_bytes()
    (photos / "truncated.jpg").write_bytes(good[: len(good) // 2])
    events: list[object] = []
    summary = engine.index(
        [photos], IndexOptions(batch_size=5, **GPU_SHAPED), on_event=events.append
    )
    reasons = {os.path.basename(f.path): f.reason for f in summary.failed}
    assert reasons == {
        "empty.jpg": "empty file (0 bytes)",
        "notes.png": "a text file, not an image",
        "truncated.jpg": "image file is truncated",
    }
    assert summary.new == 12
    assert len(stored(engine)) == 12
    # Recorded as failures: the next run names them without decoding them again.
    again = engine.index([photos], IndexOptions(**GPU_SHAPED))
    assert {os.path.basename(f.path) for f in again.failed} == set(reasons)
    assert again.model_loaded is False


@pytest.mark.slow  # decoder processes
def test_a_failed_write_behind_the_model_stops_the_run_and_resume_is_exact(
    engine: Engine, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clipseek.store import ImageIndex

    real = ImageIndex.upsert
    calls: list[int] = []

    def failing(self, records):
        calls.append(len(records))
        if len(calls) == 2:
            raise ClipseekError("disk full")
        return real(self, records)

    monkeypatch.setattr(ImageIndex, "upsert", failing)
    events: list[object] = []
    with pytest.raises(ClipseekError, match="disk full"):
        engine.index([photos], IndexOptions(batch_size=2, **GPU_SHAPED), on_event=events.append)
    written = len(engine.open_index().entries())
    reported = sum(e.size for e in events if isinstance(e, ix.BatchDone))
    assert written == calls[0] and reported <= written
    monkeypatch.setattr(ImageIndex, "upsert", real)
    resumed = engine.index([photos], IndexOptions(**GPU_SHAPED))
    assert resumed.unchanged == written and resumed.new == 12 - written
    assert sorted(stored(engine)) == disk_images(photos)


@pytest.mark.slow  # decoder processes
def test_cancel_with_writes_behind_keeps_what_was_embedded(engine: Engine, photos: Path) -> None:
    cancel = threading.Event()

    def on_event(event: object) -> None:
        if isinstance(event, ix.BatchDone):
            cancel.set()

    summary = engine.index(
        [photos], IndexOptions(batch_size=2, **GPU_SHAPED), on_event=on_event, cancel=cancel
    )
    assert summary.cancelled and 2 <= summary.new < 12
    assert len(stored(engine)) == summary.new  # everything counted was written
    resumed = engine.index([photos], IndexOptions(**GPU_SHAPED))
    assert resumed.new == 12 - summary.new
    assert sorted(stored(engine)) == disk_images(photos)


@pytest.mark.slow  # decoder processes
def test_writes_behind_the_model_coalesce_into_larger_writes(
    engine: Engine, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clipseek.store import ImageIndex

    real = ImageIndex.upsert
    sizes: list[int] = []
    gate = threading.Event()

    def slow(self, records):
        gate.wait(5)  # the first write waits until the model has embedded the rest
        sizes.append(len(records))
        return real(self, records)

    monkeypatch.setattr(ImageIndex, "upsert", slow)
    real_put = ix.BatchWriter.put
    puts: list[int] = []

    def counting_put(self, job):
        puts.append(len(job.records))
        if sum(puts) >= 12:
            gate.set()
        return real_put(self, job)

    monkeypatch.setattr(ix.BatchWriter, "put", counting_put)
    summary = engine.index([photos], IndexOptions(batch_size=2, **GPU_SHAPED))
    assert summary.new == 12 and sum(sizes) == 12
    assert len(sizes) < len(puts)  # queued batches went out together
    assert len(engine.open_index().entries()) == 12


def test_batch_size_follows_the_device_unless_the_user_sets_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ix.default_batch_size("cpu") == 32
    assert ix.default_batch_size("cuda") >= 128
    monkeypatch.delenv("CLIPSEEK_BATCH_SIZE", raising=False)
    assert load_settings().explicit_batch_size is None
    assert load_settings({"batch_size": 64}).explicit_batch_size == 64
    from clipseek.config import Settings

    assert Settings(batch_size=8).explicit_batch_size == 8  # built in code: counts as set
    monkeypatch.setenv("CLIPSEEK_BATCH_SIZE", "16")
    assert load_settings().explicit_batch_size == 16


def test_decoders_are_processes_only_where_the_gil_limits(monkeypatch) -> None:
    monkeypatch.delenv("CLIPSEEK_DECODE", raising=False)
    assert ix.decode_in_processes("cuda", 16) is True
    assert ix.decode_in_processes("cpu", 16) is False
    assert ix.decode_in_processes("cuda", 2) is False
    monkeypatch.setenv("CLIPSEEK_DECODE", "threads")
    assert ix.decode_in_processes("cuda", 16) is False
    monkeypatch.setenv("CLIPSEEK_DECODE", "processes")
    assert ix.decode_in_processes("cpu", 2) is True


def test_the_model_loads_on_its_own_thread_while_files_are_fingerprinted(
    settings, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clipseek.models import load_model

    where: list[str] = []
    release = threading.Event()

    def loader(spec, device, precision):
        where.append(threading.current_thread().name)
        release.wait(10)
        return load_model(spec, device, precision)

    engine = Engine(settings, model_loader=loader)
    real_hash = ix.content_hash
    hashed: list[str] = []

    def counting_hash(path: str, size: int) -> str:
        hashed.append(path)
        if len(hashed) >= 12:
            release.set()  # the model becomes ready once every file is fingerprinted
        return real_hash(path, size)

    monkeypatch.setattr(ix, "content_hash", counting_hash)
    summary = engine.index([photos])
    assert where == ["clipseek-model-load"]
    assert summary.new == 12
    assert sorted(hashed) == disk_images(photos)  # each file hashed once, ahead of the model
    stored_hashes = {e.extra.get("content_hash") for e in engine.open_index().entries().values()}
    assert None not in stored_hashes and len(stored_hashes) >= 11


def test_model_load_errors_reach_the_caller(settings, photos: Path) -> None:
    def broken(spec, device, precision):
        raise ClipseekError("weights missing")

    with pytest.raises(ClipseekError, match="weights missing"):
        Engine(settings, model_loader=broken).index([photos])


def test_encode_prepared_on_the_cpu_is_unchanged(loaded_tiny_model, photos: Path) -> None:
    from PIL import Image

    model = loaded_tiny_model
    images = [Image.open(p).convert("RGB") for p in sorted(photos.glob("*.jpg"))[:3]]
    items = [model.prepare(img) for img in images]
    reference = model.encode_images(model.batch_tensor(items))
    assert np.array_equal(model.encode_prepared(items), reference)
    assert model.on_device
