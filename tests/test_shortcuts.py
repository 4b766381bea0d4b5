"""The shortcuts behind the speed work give the answer the slow path would: bf16 and
trimmed text encoding, draft JPEG decoding, vectors reused for moved and copied files,
an unchanged tree only statted, thread plans, start-up without heavy imports, the
peeked index list and the HNSW search parameter.

Nothing here times anything: speed is measured by benchmarks/ (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from clipseek.engine import Engine
from clipseek.errors import DeviceError
from clipseek.indexing import pipeline as ix
from clipseek.indexing import threads as thread_tuning
from clipseek.models import load_model, resolve_model, resolve_precision
from clipseek.store import path_id
from tests.support.pictures import make_photo
from tests.support.probes import cli_code, run_python

# --------------------------------------------------------------------------- precision


@pytest.fixture(scope="module")
def tiny_bf16(tiny_model_dir: Path):
    return load_model(resolve_model(f"local-dir:{tiny_model_dir}"), device="cpu", precision="bf16")


def _pictures(count: int = 6) -> list:
    from clipseek.testing import photo_like

    return [photo_like((96 + 16 * i, 72 + 8 * i), seed=i) for i in range(count)]


def test_bf16_embeddings_stay_within_bound_of_fp32(loaded_tiny_model, tiny_bf16) -> None:
    import torch

    assert tiny_bf16.precision == "bf16"
    assert next(tiny_bf16._model.parameters()).dtype == torch.bfloat16  # real bf16 weights
    batch = torch.stack([loaded_tiny_model.transform(p) for p in _pictures()])
    full = loaded_tiny_model.encode_images(batch)
    half = tiny_bf16.encode_images(batch)
    assert half.dtype == np.float32
    cosines = (full * half).sum(axis=1)
    assert cosines.min() > 0.999, cosines  # measured ≈ 0.99996 (docs/PERFORMANCE.md)
    texts = ["a dog playing in the park", "a red car", "sunset over the sea"]
    text_cos = (
        loaded_tiny_model.encode_texts(texts).vectors * tiny_bf16.encode_texts(texts).vectors
    ).sum(axis=1)
    assert text_cos.min() > 0.999, text_cos
    # The bound is not vacuous: a different model is far outside it.
    assert (full * full[::-1]).sum(axis=1).min() < 0.999


def test_auto_precision_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    from clipseek import models

    monkeypatch.setattr(models.hardware, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(models.hardware, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("auto", "cuda") == "fp16"
    assert resolve_precision("auto", "cuda:1") == "fp16"
    assert resolve_precision("bf16", "cpu") == "bf16"  # asked for: obeyed even where slow
    with pytest.raises(DeviceError, match="fp16 is only supported on a GPU"):
        resolve_precision("fp16", "cpu")


def test_trimmed_text_encoding_matches_the_full_encoder(loaded_tiny_model) -> None:
    import torch

    texts = ["a", "a dog", "a photograph of a small red car parked by the sea at dusk", "x y z"]
    tokens = loaded_tiny_model._tokenizer(texts)
    with torch.inference_mode():
        full = torch.nn.functional.normalize(
            loaded_tiny_model._model.encode_text(tokens), dim=-1
        ).numpy()
    got = loaded_tiny_model.encode_texts(texts).vectors
    assert np.abs(got - full).max() < 1e-5
    # Each text alone gives the same vector as in a batch of mixed lengths.
    alone = np.stack([loaded_tiny_model.encode_texts([t]).vectors[0] for t in texts])
    assert np.abs(alone - got).max() < 1e-5


def test_prepare_and_batch_equal_the_model_transform(loaded_tiny_model) -> None:
    import torch
    from PIL import Image

    pictures = [*_pictures(3), Image.new("RGB", (300, 100), (255, 0, 0))]
    reference = torch.stack([loaded_tiny_model.transform(p) for p in pictures])
    prepared = [loaded_tiny_model.prepare(p) for p in pictures]
    assert all(isinstance(p, np.ndarray) and p.dtype == np.uint8 for p in prepared)
    assert torch.equal(loaded_tiny_model.batch_tensor(prepared), reference)


# --------------------------------------------------------------------------- draft decoding


@pytest.fixture(scope="module")
def big_jpegs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Photo-like JPEGs large enough for 1/2 and 1/4 DCT scaling at a 224-pixel input."""
    from clipseek.testing import photo_like

    folder = tmp_path_factory.mktemp("big")
    out = []
    for i, size in enumerate([(1600, 1200), (1200, 900), (1000, 700)]):
        path = folder / f"{i}.jpg"
        photo_like(size, seed=40 + i).save(path, quality=90)
        out.append(path)
    return out


def test_draft_decoding_is_reduced_and_close_to_the_reference(big_jpegs: list[Path]) -> None:
    import torch
    from open_clip.transform import image_transform
    from PIL import Image

    from clipseek.photos.imaging import load_for_model, open_image
    from clipseek.testing import OPENAI_MEAN, OPENAI_STD

    transform = image_transform(
        (224, 224), is_train=False, mean=OPENAI_MEAN, std=OPENAI_STD, interpolation="bicubic"
    )
    std = torch.tensor(OPENAI_STD).view(3, 1, 1)
    diffs = []
    for path in big_jpegs:
        reduced = open_image(str(path), min_size=(224, 224))
        with Image.open(path) as im:
            full = im.convert("RGB")
        assert reduced.info["clipseek_size"] == full.size  # the original size is reported
        assert min(reduced.size) < min(full.size) / 1.9  # decoded at 1/2 or less...
        assert min(reduced.size) >= 224  # ...but still covering the model input
        fast, info = load_for_model(str(path), transform, (224, 224), None)
        assert (info.width, info.height) == full.size
        diffs.append(((transform(full) - fast).abs() * std * 255).flatten())
    pixels = torch.cat(diffs)
    # Measured on these images: mean ≈ 0.5 pixel steps (docs/PERFORMANCE.md).
    assert pixels.mean() < 1.5, pixels.mean()
    assert pixels.max() < 64, pixels.max()


def test_draft_decoding_barely_moves_embeddings(big_jpegs: list[Path], loaded_tiny_model) -> None:
    from PIL import Image

    from clipseek.photos.imaging import load_for_model

    model = loaded_tiny_model
    reference, fast = [], []
    for path in big_jpegs:
        with Image.open(path) as im:
            reference.append(model.prepare(im.convert("RGB")))
        item, _ = load_for_model(str(path), model.prepare, model.image_size, None)
        fast.append(item)
    a = model.encode_images(model.batch_tensor(reference))
    b = model.encode_images(model.batch_tensor(fast))
    assert (a * b).sum(axis=1).min() > 0.999
    # The bound is not vacuous: another picture's vector is far outside it.
    assert (a * np.roll(b, 1, axis=0)).sum(axis=1).max() < 0.999


def test_small_images_are_decoded_in_full(tmp_path: Path) -> None:
    from clipseek.photos.imaging import open_image

    path = make_photo(tmp_path / "small.jpg", size=(400, 300))
    assert open_image(str(path), min_size=(224, 224)).size == (400, 300)


# --------------------------------------------------------------------------- reuse of vectors


@pytest.fixture
def model_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records the size of every image batch given to any model."""
    from clipseek.models import ClipModel

    runs: list[int] = []
    real = ClipModel.encode_images

    def counting(self, batch):
        runs.append(len(batch))
        return real(self, batch)

    monkeypatch.setattr(ClipModel, "encode_images", counting)
    return runs


def _loads_forbidden(spec, device, precision):
    raise AssertionError("the model must not load")


def _vectors(engine: Engine) -> dict[str, np.ndarray]:
    index = engine.open_index()
    entries = index.entries()
    got = index.get(list(entries))
    return {entries[i].path: vector for i, (vector, _meta) in got.items()}


def test_renamed_folder_reuses_vectors_without_the_model(
    settings, tmp_path: Path, model_runs: list[int], decode_counter: list[str]
) -> None:
    root = tmp_path / "library"
    for i in range(20):
        make_photo(root / "trip" / f"{i:02d}.png", size=(64, 48), seed=i)
    make_photo(root / "other.jpg", seed=99)
    Engine(settings).index([root])
    before = _vectors(Engine(settings))
    model_runs.clear()
    decode_counter.clear()

    (root / "trip").rename(root / "holiday 2024")
    summary = Engine(settings, model_loader=_loads_forbidden).index([root])

    assert model_runs == [] and decode_counter == [] and not summary.model_loaded
    assert summary.model_batches == 0
    assert (summary.new, summary.reused, summary.removed, summary.unchanged) == (20, 20, 20, 1)
    assert summary.embedded == 0
    after = _vectors(Engine(settings))
    assert len(after) == 21
    for i in range(20):
        old = before[str(root / "trip" / f"{i:02d}.png")]
        np.testing.assert_allclose(
            after[str(root / "holiday 2024" / f"{i:02d}.png")], old, atol=1e-6
        )
    entry = Engine(settings).open_index().entries()[path_id(str(root / "holiday 2024" / "03.png"))]
    assert (entry.extra["width"], entry.extra["height"]) == (64, 48)


def test_file_moved_to_another_indexed_root_reuses_its_vector(
    settings, tmp_path: Path, model_runs: list[int]
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    make_photo(a / "keep.png", seed=1)
    make_photo(a / "moving.png", seed=2)
    make_photo(b / "there.png", seed=3)
    engine = Engine(settings)
    engine.index([a])
    engine.index([b])
    model_runs.clear()
    shutil.move(str(a / "moving.png"), str(b / "moved.png"))
    summary = Engine(settings, model_loader=_loads_forbidden).index([b])
    assert model_runs == [] and summary.reused == 1 and summary.new == 1


def test_same_size_different_bytes_is_embedded(
    settings, tmp_path: Path, model_runs: list[int]
) -> None:
    """BMPs of one size have equal byte counts: only the content hash tells them apart."""
    root = tmp_path / "bmps"
    make_photo(root / "one.bmp", size=(40, 30), seed=1)
    engine = Engine(settings)
    engine.index([root])
    make_photo(root / "two.bmp", size=(40, 30), seed=2)
    assert (root / "one.bmp").stat().st_size == (root / "two.bmp").stat().st_size
    model_runs.clear()
    summary = engine.index([root])
    assert summary.reused == 0 and summary.embedded == 1 and model_runs == [1]
    vectors = _vectors(engine)
    assert not np.allclose(vectors[str(root / "one.bmp")], vectors[str(root / "two.bmp")])


def test_copy_and_touch_reuse_while_changed_content_is_embedded(
    engine: Engine, photos: Path, model_runs: list[int], decode_counter: list[str]
) -> None:
    engine.index([photos])
    model_runs.clear()
    decode_counter.clear()
    shutil.copy2(photos / "beach.jpg", photos / "beach copy.jpg")
    st = (photos / "city.png").stat()
    os.utime(photos / "city.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    make_photo(photos / "forest.jpeg", size=(70, 50), seed=123)  # new content
    summary = engine.index([photos])
    assert [os.path.basename(p) for p in decode_counter] == ["forest.jpeg"]
    assert model_runs == [1]
    assert (summary.new, summary.updated, summary.reused) == (1, 2, 2)
    vectors = _vectors(engine)
    np.testing.assert_allclose(
        vectors[str(photos / "beach copy.jpg")], vectors[str(photos / "beach.jpg")], atol=1e-6
    )


def test_stored_hash_is_the_file_fingerprint(engine: Engine, photos: Path) -> None:
    engine.index([photos])
    path = photos / "sub" / "a.jpg"
    entry = engine.open_index().entries()[path_id(str(path))]
    assert entry.extra["content_hash"] == ix.content_hash(str(path), path.stat().st_size)


def test_content_hash_reads_both_ends(tmp_path: Path) -> None:
    from clipseek.indexing import fingerprint

    size = 3 * fingerprint.HASH_SPAN
    data = bytearray(os.urandom(size))
    path = tmp_path / "blob.jpg"
    path.write_bytes(bytes(data))
    first = fingerprint.content_hash(str(path), size)
    data[size // 2] ^= 0xFF  # the middle is not read: same fingerprint
    path.write_bytes(bytes(data))
    assert fingerprint.content_hash(str(path), size) == first
    data[-1] ^= 0xFF  # the last MiB is
    path.write_bytes(bytes(data))
    assert fingerprint.content_hash(str(path), size) != first


def test_unchanged_tree_is_only_statted(
    settings, photos: Path, monkeypatch: pytest.MonkeyPatch, decode_counter: list[str]
) -> None:
    Engine(settings).index([photos])
    decode_counter.clear()
    hashed: list[str] = []
    monkeypatch.setattr(ix, "content_hash", lambda path, size: hashed.append(path) or "x")
    opened: list[str] = []
    real_open = open

    def spy_open(file, *args, **kwargs):
        if str(file).startswith(str(photos)):
            opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy_open)
    summary = Engine(settings, model_loader=_loads_forbidden).index([photos])
    assert summary.unchanged == 12 and not summary.model_loaded
    assert decode_counter == [] and hashed == [] and opened == []


# --------------------------------------------------------------------------- pipeline settings


def test_thread_plan_defaults_and_overrides() -> None:
    assert thread_tuning.thread_plan("cpu", cores=2) == (2, 2)
    assert thread_tuning.thread_plan("cpu", cores=16) == (16, 16)
    assert thread_tuning.thread_plan("cpu", cores=64) == (
        64,
        16,
    )  # decoders capped: memory stays bounded
    threads, workers = thread_tuning.thread_plan("cuda", cores=16)
    assert workers == 16 and threads <= 2
    assert thread_tuning.thread_plan("cpu", decode_workers=3, torch_threads=1, cores=8) == (1, 3)


def test_indexing_restores_torch_threads(engine: Engine, photos: Path) -> None:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(3)  # not the 1 asked for below, whatever this machine's default
    try:
        engine.index([photos], ix.IndexOptions(torch_threads=1, decode_workers=1, batch_size=4))
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
    assert len(engine.open_index().entries()) == 12


# --------------------------------------------------------------------------- fast start

_HEAVY = {"torch", "open_clip", "chromadb", "numpy", "PIL"}


@pytest.mark.slow  # fresh interpreters
def test_help_and_info_import_nothing_heavy(engine: Engine, photos: Path, db_path: Path) -> None:
    engine.index([photos])
    for args in (
        ["--help"],
        ["info", "--db", str(db_path)],
        ["info", "--json", "--db", str(db_path)],
    ):
        ran = run_python(cli_code(args))
        assert ran.returncode == 0, ran.output
        assert not ran.modules & _HEAVY, (args, ran.modules & _HEAVY)


def test_peeked_indexes_match_chromadb(engine: Engine, photos: Path) -> None:
    assert engine.store.peek_indexes() == []  # no database yet
    engine.index([photos])
    (photos / "dog.bmp").unlink()
    engine.index([photos])
    peeked = engine.store.peek_indexes()
    assert peeked is not None and peeked == engine.store.indexes()
    assert peeked[0].count == 11


# --------------------------------------------------------------------------- HNSW


def test_older_index_gets_the_current_ef_search(
    settings, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clipseek import store

    with monkeypatch.context() as patch:
        patch.setattr(store.chroma, "HNSW_CONFIG", {**store.HNSW_CONFIG, "ef_search": 10})
        first = Engine(settings)
        first.index([photos])
        assert first.open_index()._col.configuration["hnsw"]["ef_search"] == 10
    engine = Engine(settings)
    # A query never writes the index (docs/RELIABILITY.md); the next index run raises it.
    assert engine.open_index()._col.configuration["hnsw"]["ef_search"] == 10
    engine.index([photos])
    index = engine.open_index()
    assert index._col.configuration["hnsw"]["ef_search"] == store.HNSW_CONFIG["ef_search"]
    assert store.HNSW_CONFIG["ef_search"] > 10


@pytest.mark.slow
def test_named_model_weights_stream_into_bf16_exactly(capfd: pytest.CaptureFixture[str]) -> None:
    """ViT-B/32 is built without random init, in bf16, and filled tensor by tensor from
    the checkpoint: every weight must equal the file's, and no 'random' warning shows."""
    import torch
    from safetensors.torch import load_file

    from clipseek.models import hf_cache_dir
    from clipseek.testing import install_hf_standin

    path = install_hf_standin(hf_cache_dir(), "ViT-B-32-quickgelu", "openai")
    model = load_model(resolve_model("ViT-B/32"), device="cpu", precision="bf16")
    stored = load_file(str(path))
    state = model._model.state_dict()
    assert set(state) == set(stored)
    for key, value in stored.items():
        expected = value.to(torch.bfloat16) if value.is_floating_point() else value
        assert state[key].dtype == expected.dtype, key
        assert torch.equal(state[key], expected), key
    assert "initialized randomly" not in capfd.readouterr().err


def test_cli_thread_overrides_reach_the_indexer(
    settings, photos: Path, db_path: Path, tiny_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from clipseek.cli.app import app

    seen: list[tuple[int | None, int | None]] = []
    real = ix.Indexer.run

    def spy(self, *args, **kwargs):
        seen.append((self.options.decode_workers, self.options.torch_threads))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ix.Indexer, "run", spy)
    args = ["index", str(photos), "--db", str(db_path), "-m", tiny_model, "--device", "cpu"]
    result = CliRunner().invoke(app, [*args, "--workers", "3", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert seen == [(3, 1)]
    bad = CliRunner().invoke(app, [*args, "--workers", "0"])
    assert bad.exit_code != 0 and "--workers" in bad.output


def test_cli_summary_names_reused_files(photos: Path, db_path: Path, tiny_model: str) -> None:
    from typer.testing import CliRunner

    from clipseek.cli.app import app

    args = ["index", str(photos), "--db", str(db_path), "-m", tiny_model, "--device", "cpu"]

    def summary_line(output: str) -> str:
        return next(line for line in output.splitlines() if line.startswith("Done"))

    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0 and "reused" not in summary_line(first.output)
    (photos / "beach.jpg").rename(photos / "beach 2019.jpg")
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert summary_line(again.output).endswith(
        ": 1 new, 0 updated, 1 of them reused, 11 unchanged, 1 removed, 0 failed."
    )
