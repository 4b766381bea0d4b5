"""The memory of an index run's model (issue 26).

The indexer's torch model leaves its text tower out until something asks for text (a
third of ViT-B/32's memory that indexing never uses), and whatever asks for text
afterwards (a search in the same engine, an export) still gets the model's own. An ONNX
model holds one image session at a time, warmed for the thread count the run starts with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from clipseek.models import resolve_model
from clipseek.models.torch_backend import load_model, release_idle_memory

TEXTS = ["a red circle", "a blue square on a light background", ""]


def _items(size: int, n: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return list(rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8))


def _meta_names(model) -> list[str]:
    module = model._model
    return [
        name
        for name, tensor in list(module.named_parameters()) + list(module.named_buffers())
        if tensor.is_meta
    ]


@pytest.fixture(scope="module")
def siglip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from clipseek.testing import build_tiny_siglip

    return build_tiny_siglip(tmp_path_factory.mktemp("tiny-siglip"), seed=1)


@pytest.fixture(params=[(f, p) for f in ("clip", "siglip") for p in ("fp32", "bf16")], ids=str)
def whole_and_lazy(
    request: pytest.FixtureRequest, tiny_model_dir: Path, siglip_dir: Path
) -> tuple[Any, Any]:
    """The whole model, and the one an index run loads (its text tower left out), of each
    family in each precision."""
    family, precision = request.param
    folder = tiny_model_dir if family == "clip" else siglip_dir
    spec = resolve_model(f"local-dir:{folder}")
    whole = load_model(spec, device="cpu", precision=precision)
    return whole, load_model(spec, device="cpu", precision=precision, text="lazy")


def test_image_only_model_embeds_images_exactly_as_the_whole_one(
    whole_and_lazy: tuple[Any, Any],
) -> None:
    whole, lazy = whole_and_lazy

    assert whole.text_loaded and not lazy.text_loaded
    assert lazy.dim == whole.dim
    # No text tower weights exist: every one of them is a meta tensor (no memory), and
    # every image tower weight is real.
    meta = set(_meta_names(lazy))
    text_params = {
        name
        for name, _ in whole._model.named_parameters()
        if not name.startswith("visual.") and not name.startswith("logit_")
    }
    assert text_params and text_params <= meta
    assert not any(name.startswith("visual.") for name in meta)
    real = sum(p.numel() for p in lazy._model.parameters() if not p.is_meta)
    visual = sum(p.numel() for p in whole._model.visual.parameters())
    assert visual <= real < sum(p.numel() for p in whole._model.parameters())

    items = _items(whole.image_size[0])
    expected = whole.encode_prepared(items)
    got = lazy.encode_prepared(items)
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert np.array_equal(got, expected)  # bit-identical: the same weights, the same code
    assert not lazy.text_loaded  # embedding images never builds the text tower


def test_text_asked_of_an_image_only_model_is_the_whole_models(
    whole_and_lazy: tuple[Any, Any],
) -> None:
    whole, lazy = whole_and_lazy

    got = lazy.encode_texts(TEXTS)
    expected = whole.encode_texts(TEXTS)
    assert lazy.text_loaded and _meta_names(lazy) == []
    assert np.array_equal(got.vectors, expected.vectors)
    assert got.truncated == expected.truncated
    # The same module, weight for weight and in the same dtypes, and in eval mode.
    ours, theirs = lazy._model.state_dict(), whole._model.state_dict()
    assert set(ours) == set(theirs)
    for key, tensor in theirs.items():
        assert ours[key].dtype == tensor.dtype and torch.equal(ours[key], tensor), key
    assert not any(module.training for module in lazy._model.modules())
    # Images after text: unchanged.
    items = _items(whole.image_size[0], 3)
    assert np.array_equal(lazy.encode_prepared(items), whole.encode_prepared(items))


def test_weights_not_in_one_safetensors_file_load_whole(tiny_model_dir: Path, tmp_path) -> None:
    """open_clip's own loader reads other layouts (a .bin state dict): the whole model."""
    import shutil

    from safetensors.torch import load_file

    folder = tmp_path / "bin-model"
    folder.mkdir()
    shutil.copy(tiny_model_dir / "open_clip_config.json", folder)
    state = load_file(str(tiny_model_dir / "open_clip_model.safetensors"))
    torch.save(state, folder / "open_clip_pytorch_model.bin")
    spec = resolve_model(f"local-dir:{folder}")
    lazy = load_model(spec, device="cpu", precision="fp32", text="lazy")
    assert lazy.text_loaded and _meta_names(lazy) == []
    whole = load_model(resolve_model(f"local-dir:{tiny_model_dir}"), device="cpu", precision="fp32")
    assert np.array_equal(lazy.encode_texts(TEXTS).vectors, whole.encode_texts(TEXTS).vectors)


def test_the_indexers_model_has_no_text_tower_and_a_search_after_indexing_works(
    settings, photos: Path, tiny_model_dir: Path
) -> None:
    """The app indexes and then searches with one engine (its indexing screen): the
    indexer's model builds its text tower for that first search."""
    from clipseek.engine import Engine

    engine = Engine(settings)
    summary = engine.index([photos])
    assert summary.new == 12
    model = engine.index_model()
    assert model.backend == "torch" and not model.text_loaded
    response = engine.search("a red circle", top_k=5)
    assert model.text_loaded and engine.model() is model

    fresh = Engine(settings)  # a new process's engine: a reader's whole model
    expected = fresh.search("a red circle", top_k=5)
    assert fresh.model() is not model and fresh.model().text_loaded
    assert [r.path for r in response.results] == [r.path for r in expected.results]
    assert [r.score for r in response.results] == pytest.approx(
        [r.score for r in expected.results], abs=1e-6
    )


def test_export_after_indexing_builds_the_text_tower_first(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An fp32 indexer's model is exported as it is (export._cpu_fp32): its text tower is
    built first, and the export's text vectors are the model's."""
    from clipseek.models.onnx_backend import load_onnx_model
    from clipseek.models.runtime import export_after_use, load_index_model

    monkeypatch.delenv("CLIPSEEK_NO_EXPORT", raising=False)
    spec = resolve_model(f"local-dir:{tiny_model_dir}")
    model = load_index_model(spec, "cpu", "fp32", "torch")
    assert not model.text_loaded
    outcome = export_after_use(model)
    assert outcome.exported is not None, outcome.error
    assert model.text_loaded
    fast = load_onnx_model(spec)
    assert fast is not None
    whole = load_model(spec, device="cpu", precision="fp32")
    a, b = fast.encode_texts(TEXTS).vectors, whole.encode_texts(TEXTS).vectors
    assert np.all(np.sum(a * b, axis=1) >= 0.9999)


def test_release_idle_memory_leaves_a_loaded_model_working(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paging out a library the model does run (torch's own CPU library, named here as if
    it were a GPU one) only costs reading it back: the vectors do not change."""
    import clipseek.models.torch_backend as backend

    spec = resolve_model(f"local-dir:{tiny_model_dir}")
    model = load_model(spec, device="cpu", precision="fp32", text="lazy")
    items = _items(model.image_size[0])
    before = model.encode_prepared(items)
    monkeypatch.setattr(backend, "_GPU_LIBRARIES", (*backend._GPU_LIBRARIES, "libtorch_cpu"))
    release_idle_memory()
    assert np.array_equal(model.encode_prepared(items), before)
    assert model.encode_texts(TEXTS).vectors.shape == (len(TEXTS), model.dim)


def test_load_meter_can_be_read_without_using_up_its_reading() -> None:
    from clipseek.indexing.threads import LoadMeter

    clock, busy, own = [0.0], [10.0], [1.0]
    meter = LoadMeter(clock=lambda: clock[0], busy=lambda: busy[0], own=lambda: own[0])
    clock[0], busy[0], own[0] = 2.0, 13.0, 2.0  # 1 core of others' work over 2 s
    assert meter.other(keep=True) == pytest.approx(1.0)
    clock[0], busy[0], own[0] = 4.0, 16.0, 3.0  # and 1 more over the next 2 s
    assert meter.other(keep=True) == pytest.approx(1.0)  # still from the start
    assert meter.other() == pytest.approx(1.0)
    clock[0] = 4.1
    assert meter.other() is None  # that one did replace the reading


@pytest.fixture
def onnx_model(loaded_tiny_model):
    from clipseek.models.export import export_model
    from clipseek.models.onnx_backend import OnnxModel

    return OnnxModel(loaded_tiny_model.spec, export_model(loaded_tiny_model))


@pytest.mark.parametrize("other_load", [0.0, 1.0, 3.0])
def test_the_image_session_is_warmed_for_the_threads_the_run_starts_with(
    onnx_model, other_load: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On four cores with others' work on some of them, the session built while the first
    batch decodes is the one the tuner starts with, so the run builds no second one."""
    import threading

    from clipseek.indexing import threads as schedule
    from clipseek.indexing.model_loading import warm_image_tower

    monkeypatch.setattr(schedule, "physical_cores", lambda: 4)
    monkeypatch.setattr(schedule, "other_load_now", lambda *a, **k: other_load)
    expected = schedule.ThreadTuner.for_cpu(4, onnx_model.precision).threads
    warm_image_tower(onnx_model)
    for thread in threading.enumerate():
        if thread.name == "clipseek-warm-image":
            thread.join()
    assert list(onnx_model._sessions) == [("image", expected)]
    session = onnx_model._sessions[("image", expected)]
    assert session.get_session_options().intra_op_num_threads == expected
    if other_load >= 1.0:
        assert expected < 4  # (the case this is about: not every core)


def test_one_image_session_at_a_time(onnx_model, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each session holds the weights: the previous one is dropped before the next is
    built (its memory can then be reused for it), at the cost of building again when the
    tuner goes back to a thread count."""
    from clipseek.models import onnx_backend

    built: list[tuple[int, list]] = []
    real = onnx_backend.load_session

    def counting(path: str, threads: int, **kwargs):
        built.append((threads, [k for k in onnx_model._sessions if k[0] == "image"]))
        return real(path, threads, **kwargs)

    monkeypatch.setattr(onnx_backend, "load_session", counting)
    items = [onnx_model.prepare(_picture(i)) for i in range(3)]
    onnx_model.set_threads(2)
    first = onnx_model.encode_prepared(items)
    for threads in (1, 2, 1, 1):
        onnx_model.set_threads(threads)
        assert np.allclose(onnx_model.encode_prepared(items), first, atol=1e-5)
        assert [k for k in onnx_model._sessions if k[0] == "image"] == [("image", threads)]
    # Built for 2, 1, 2 and 1 again (not for the repeated 1), each with none held.
    assert built == [(2, []), (1, []), (2, []), (1, [])]


def _picture(seed: int):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8))


def test_an_index_run_never_reads_a_hub_tokenizer_and_a_damaged_one_is_a_sentence(
    siglip_dir: Path, tmp_path: Path
) -> None:
    """SigLIP 2's tokenizer file costs about a second and 200 MB to read: the indexer's
    model reads it only when text is first asked for, and a damaged file then says so in
    one sentence (a ModelError), not a traceback."""
    import shutil

    from clipseek.errors import ModelError

    spec = resolve_model(f"local-dir:{siglip_dir}")
    model = load_model(spec, device="cpu", precision="fp32", text="lazy")
    model.encode_prepared(_items(model.image_size[0], 2))
    assert model._tokenizer._hub is None  # not read by loading or embedding images
    expected = load_model(spec, device="cpu", precision="fp32").encode_texts(TEXTS)
    assert np.allclose(model.encode_texts(TEXTS).vectors, expected.vectors, atol=1e-6)

    damaged = tmp_path / "damaged"
    shutil.copytree(siglip_dir, damaged)
    (damaged / "tokenizer.json").write_text('{"model": ', encoding="utf-8")
    broken = load_model(resolve_model(f"local-dir:{damaged}"), device="cpu", text="lazy")
    broken.encode_prepared(_items(broken.image_size[0], 1))  # images still embed
    with pytest.raises(ModelError) as err:
        broken.encode_texts(TEXTS)
    assert "tokenizer" in str(err.value) and "\n" not in str(err.value)
