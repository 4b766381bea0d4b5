"""The ONNX fast path: export, tokenizer, agreement with torch, and how engines pick it."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipseek.models import load_model, resolve_model
from clipseek.testing import fixture_model_spec

# --------------------------------------------------------------------------- tokenizer


def _varied_strings(count: int, seed: int = 0) -> list[str]:
    """Words, punctuation, digits, accents, scripts, emoji, HTML entities, odd spacing,
    mojibake (which ftfy repairs), the special markers, empty and very long texts."""
    rng = random.Random(seed)
    words = [
        "a",
        "dog",
        "Photo",
        "of",
        "the",
        "CAT's",
        "we'll",
        "isn't",
        "red",
        "circle",
        "ŝkolo",
        "naïve",
        "café",
        "Straße",
        "東京",
        "タワー",
        "서울",
        "Москва",
        "مرحبا",
        "שלום",
        "ελληνικά",
        "हिन्दी",
        "ไทย",
        "🙂",
        "🐶🐱",
        "👩‍👩‍👧",
        "🇫🇷",
        "❤️",
        "e\u0301",
        "ﬁ",
        "Ⅻ",
        "½",
        "²",
        "3.14",
        "2026",
        "1,000",
        "#tag",
        "@user",
        "http://x.org/a?b=c",
        "C++",
        "--",
        "...",
        "&amp;",
        "&lt;b&gt;",
        "&amp;amp;",
        "&#39;",
        "&quot;hi&quot;",
        "&nbsp;",
        "â€™",
        "Ã©",
        "<start_of_text>",
        "<end_of_text>",
        "<START_OF_TEXT>",
        "\t",
        "\n",
        "\u00a0",
        "\u200b",
        "'s",
        "'re",
        "'ll",
        "'d",
        "'m",
        "'ve",
        "'t",
        "don't",
        "O'Neil",
        "x" * 40,
        "ab" * 30,
    ]
    seps = [" ", "  ", "", "\n", " - ", ", ", "!", "?"]
    out = ["", " ", "\n\t ", "a", "A" * 500, "a dog " * 100, "🐶" * 90, "&amp;" * 50]
    while len(out) < count:
        n = rng.choice([1, 2, 3, 5, 8, 13, 40, 120])
        pieces = [rng.choice(words) + rng.choice(seps) for _ in range(n)]
        if rng.random() < 0.2:
            pieces.append(
                "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(1, 12)))
            )
        out.append("".join(pieces))
    return out


@pytest.mark.slow  # thousands of strings through two tokenizers
def test_tokenizer_gives_open_clips_ids_for_thousands_of_varied_strings() -> None:
    from open_clip.tokenizer import SimpleTokenizer, default_bpe

    from clipseek.models.tokenizer import ClipTokenizer

    ours = ClipTokenizer(default_bpe(), 77)
    theirs = SimpleTokenizer()
    texts = _varied_strings(3000)
    for start in range(0, len(texts), 250):
        chunk = texts[start : start + 250]
        ids, cut = ours(chunk)
        expected = theirs(chunk).numpy()
        for row, text in enumerate(chunk):
            assert ids[row].tolist() == expected[row].tolist(), repr(text)
            assert cut[row] == (len(theirs.encode(text)) + 2 > 77), repr(text)


def test_text_that_skips_ftfy_is_text_ftfy_leaves_unchanged() -> None:
    """Plain printable ASCII skips importing ftfy (a tenth of a cold query); that is only
    right if ftfy would have returned it as it was, which is checked here over strings
    built to probe its fixes (entities, quotes, escapes, line ends), and ftfy is still
    used for everything else."""
    import ftfy

    from clipseek.models import tokenizer

    rng = random.Random(3)
    printable = [chr(c) for c in range(0x20, 0x7F)] + ["\t", "\n"]
    pieces = ["dog", "It's", "``x''", '"q"', "lt;", "#39;", "\\x1b[31m", "--", "a\tb\n", "Ã"]
    plain = 0
    for i in range(20_000):
        if i % 2:
            text = "".join(rng.choice(printable) for _ in range(rng.randrange(0, 30)))
        else:
            text = " ".join(rng.choice(pieces) for _ in range(rng.randrange(0, 8)))
        skips = tokenizer._FTFY_IDENTITY.fullmatch(text) is not None
        if skips:
            plain += 1
            assert ftfy.fix_text(text) == text, repr(text)
        assert skips == (
            text.isascii()
            and "&" not in text
            and "\r" not in text
            and all(ch in "\t\n" or ch.isprintable() for ch in text)
        ), repr(text)
    assert plain > 5_000
    # What needs fixing still reaches ftfy.
    assert tokenizer._clean("don\u2019t Ã©t&eacute;") == "don't été"


def test_tokenizer_support_is_decided_by_the_models_own_tokenizer() -> None:
    import open_clip

    from clipseek.models.tokenizer import supported

    assert supported(open_clip.get_tokenizer("ViT-B-32-quickgelu")) is None
    assert "not CLIP" in (supported(object()) or "")


# --------------------------------------------------------------------------- export + agreement


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(1)
    sizes = [(100, 80), (80, 100), (32, 32), (20, 12), (640, 480), (33, 200)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


TEXTS = ["a red circle", "", "a photo of a dog on the beach " * 20, "🐶 &amp; Straße", "x"]


def _assert_agree(torch_model, onnx_model) -> None:
    a = torch_model.encode_texts(TEXTS)
    b = onnx_model.encode_texts(TEXTS)
    assert a.truncated == b.truncated
    assert b.vectors.dtype == np.float32 and b.vectors.shape == a.vectors.shape
    assert (a.vectors * b.vectors).sum(1).min() >= 0.9999
    images = _images()
    x = torch_model.encode_prepared([torch_model.prepare(i) for i in images])
    y = onnx_model.encode_prepared([onnx_model.prepare(i) for i in images])
    assert (x * y).sum(1).min() >= 0.9999
    single = onnx_model.encode_image(images[0])
    assert float(single @ x[0]) >= 0.9999
    assert onnx_model.dim == torch_model.dim and onnx_model.image_size == torch_model.image_size


@pytest.mark.slow  # several seconds of CPU
@pytest.mark.parametrize("which", ["tiny", "shapes"])
def test_export_agrees_with_torch(which: str, tiny_model: str, isolated_env: Path) -> None:
    from clipseek.models.export import export_model, exports_root, find_export
    from clipseek.models.onnx_backend import OnnxModel

    name = tiny_model if which == "tiny" else fixture_model_spec()
    spec = resolve_model(name)
    torch_model = load_model(spec, device="cpu", precision="fp32")
    assert find_export(spec) is None
    export = export_model(torch_model)
    assert export.folder.parent == exports_root()
    assert str(exports_root()).startswith(str(isolated_env))
    manifest = json.loads((export.folder / "manifest.json").read_text())
    assert manifest["key"] == spec.key and manifest["dim"] == torch_model.dim
    assert manifest["weights"]["size"] > 0 and len(manifest["weights"]["sha256"]) == 64
    assert find_export(spec) == export
    _assert_agree(torch_model, OnnxModel(spec, export))


def test_text_query_lengths_and_batches_all_agree(loaded_tiny_model) -> None:
    """The text tower runs cut after the last end marker: every length and batch size."""
    from clipseek.models.export import export_model
    from clipseek.models.onnx_backend import OnnxModel

    fast = OnnxModel(loaded_tiny_model.spec, export_model(loaded_tiny_model))
    texts = [" ".join(["word"] * n) for n in (0, 1, 3, 7, 20, 75, 76, 90)]
    for batch in ([texts[0]], texts[:3], texts):
        a = loaded_tiny_model.encode_texts(batch).vectors
        b = fast.encode_texts(batch).vectors
        assert (a * b).sum(1).min() >= 0.9999


def test_quick_start_sessions_skip_prepacking_and_give_the_same_vectors(
    loaded_tiny_model, monkeypatch
) -> None:
    """A query's and the app's sessions are built without weight prepacking (a faster
    start); they must answer as the prepacked ones do, and the option must reach ONNX
    Runtime (a session built with it is asked for the setting back)."""
    from clipseek.models import onnx_backend
    from clipseek.models.export import export_model
    from clipseek.models.runtime import load_reader_model
    from clipseek.testing import photo_like

    export = export_model(loaded_tiny_model)
    spec = loaded_tiny_model.spec
    built: list[tuple[str, bool]] = []
    real = onnx_backend.load_session

    def recording(path: str, threads: int, *, prepack: bool = True):
        session = real(path, threads, prepack=prepack)
        try:
            disabled = session.get_session_options().get_session_config_entry(
                "session.disable_prepacking"
            )
        except RuntimeError:  # never set
            disabled = ""
        assert (disabled == "1") is (not prepack)
        built.append((Path(path).name, prepack))
        return session

    monkeypatch.setattr(onnx_backend, "load_session", recording)
    quick = load_reader_model(spec, "cpu", "fp32", "auto", quick_start=True)
    steady = onnx_backend.OnnxModel(spec, export)
    texts = ["a red circle", "a city at night", ""]
    a, b = quick.encode_texts(texts).vectors, steady.encode_texts(texts).vectors
    assert (a * b).sum(1).min() >= 0.9999
    image = photo_like((96, 64), seed=3)
    assert float(quick.encode_image(image) @ steady.encode_image(image)) >= 0.9999
    assert ("text.onnx", False) in built and ("text.onnx", True) in built
    assert ("image.onnx", False) in built and ("image.onnx", True) in built


@pytest.mark.slow  # exports a ViT-B/32-sized model (tens of seconds)
def test_vit_b32_shaped_standin_exports_and_agrees(isolated_env: Path) -> None:
    """The real architecture (ViT-B/32, QuickGELU, fp16 checkpoint) through the named path."""
    import huggingface_hub.constants as hf

    from clipseek.models.export import export_model
    from clipseek.models.onnx_backend import OnnxModel
    from clipseek.testing import install_hf_standin

    install_hf_standin(hf.HF_HUB_CACHE)
    spec = resolve_model("ViT-B/32")
    torch_model = load_model(spec, device="cpu", precision="fp32")
    export = export_model(torch_model)
    assert export.manifest["text_dynamic_length"] is True
    # The weights sit beside each graph (ONNX Runtime maps them instead of copying them).
    for tower in ("text.onnx", "image.onnx"):
        graph, weights = export.path(tower), export.path(f"{tower}.data")
        assert f"{tower}.data" in export.manifest["files"]
        assert weights.stat().st_size > 100 * graph.stat().st_size
    _assert_agree(torch_model, OnnxModel(spec, export))


def test_half_written_and_stale_exports_are_never_used(loaded_tiny_model) -> None:
    from clipseek.models.export import MANIFEST, export_model, exports_root, find_export

    spec = loaded_tiny_model.spec
    export = export_model(loaded_tiny_model)
    # A crashed export leaves a temporary folder; it is not an export.
    leftover = exports_root() / ".tmp-crashed"
    leftover.mkdir()
    (leftover / "text.onnx").write_bytes(b"partial")
    assert find_export(spec) == export
    # A missing file makes the export incomplete: a graph, or the weights beside it.
    for name in ("image.onnx", "text.onnx.data"):
        (export.folder / name).rename(export.folder / f"{name}.bak")
        assert find_export(spec) is None
        (export.folder / f"{name}.bak").rename(export.folder / name)
        assert find_export(spec) == export
    # A checkpoint replaced since (another mtime) makes the export stale.
    weights = Path(export.manifest["weights"]["path"])
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert find_export(spec) is None
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    # An unreadable manifest is no export either.
    (export.folder / MANIFEST).write_text("{not json")
    assert find_export(spec) is None


def test_failed_export_is_reported_once_and_torch_keeps_working(
    loaded_tiny_model, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clipseek.models import export as export_mod
    from clipseek.models.runtime import export_after_use, needs_export

    monkeypatch.delenv("CLIPSEEK_NO_EXPORT", raising=False)
    calls: list[int] = []

    def broken(model, **_kw):
        calls.append(1)
        raise export_mod.ExportError("No space left on device.")

    monkeypatch.setattr(export_mod, "export_model", broken)
    first = export_after_use(loaded_tiny_model)
    assert first.error == "No space left on device." and "ExportError" in (first.detail or "")
    assert not needs_export(loaded_tiny_model)
    second = export_after_use(loaded_tiny_model)
    assert second.error is None and second.exported is None and calls == [1]
    assert loaded_tiny_model.encode_texts(["still works"]).vectors.shape[0] == 1


def test_missing_onnx_package_is_one_clear_sentence(
    loaded_tiny_model, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    from clipseek.models.export import ExportError, export_model

    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnx":
            raise ImportError("No module named 'onnx'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    with pytest.raises(ExportError, match="pip install onnx"):
        export_model(loaded_tiny_model)


# --------------------------------------------------------------------------- engines


def _settings(model: str, db: Path, **extra):
    from clipseek.config import load_settings

    return load_settings({"model": model, "db": db, **extra})


@pytest.mark.slow  # several seconds of CPU
def test_query_exports_after_answering_then_uses_onnx(
    tiny_model: str, photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clipseek.engine import Engine

    db = tmp_path / "db"
    Engine(_settings(tiny_model, db, device="cpu", precision="fp32")).index([photos])
    monkeypatch.delenv("CLIPSEEK_NO_EXPORT", raising=False)
    # fp32: on a CPU with native bf16, "auto" answers in bf16, which ONNX's fp32 cannot match
    # to 1e-4.
    first = Engine(_settings(tiny_model, db, precision="fp32"))
    answer = first.search("a red circle", top_k=3)
    assert first.model().backend == "torch" and first.model().device == "cpu"
    assert first.fast_path_pending()
    outcome = first.export_fast_path()
    assert outcome.exported is not None and not first.fast_path_pending()
    second = Engine(_settings(tiny_model, db, precision="fp32"))
    again = second.search("a red circle", top_k=3)
    assert second.model().backend == "onnx"
    assert [r.path for r in again.results] == [r.path for r in answer.results]
    assert np.allclose(
        [r.score for r in again.results], [r.score for r in answer.results], atol=1e-4
    )
    image = second.search_image(Image.open(next(photos.glob("*.png"))).convert("RGB"), top_k=2)
    assert len(image.results) == 2


def test_index_run_exports_and_backend_onnx_indexes_like_torch(
    tiny_model: str, photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clipseek.engine import Engine
    from clipseek.models.export import find_export

    monkeypatch.delenv("CLIPSEEK_NO_EXPORT", raising=False)
    spec = resolve_model(tiny_model)
    torch_engine = Engine(_settings(tiny_model, tmp_path / "t", device="cpu", precision="fp32"))
    torch_engine.index([photos])
    assert find_export(spec) is None and torch_engine.fast_path_pending()
    assert torch_engine.export_fast_path().exported is not None  # what the faces call after
    assert find_export(spec) is not None
    onnx_engine = Engine(_settings(tiny_model, tmp_path / "o", device="cpu"), backend="onnx")
    onnx_engine.index([photos])
    assert onnx_engine.index_model().backend == "onnx"
    a, b = torch_engine.open_index(), onnx_engine.open_index()
    ids = sorted(a.entries())
    assert ids == sorted(b.entries()) and len(ids) == 12
    va, vb = a.get(ids), b.get(ids)
    for image_id in ids:
        assert float(va[image_id][0] @ vb[image_id][0]) >= 0.9999


def test_cli_index_exports_once_then_queries_use_it(
    runner, cli_env: Path, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clipseek.cli.app import app

    monkeypatch.delenv("CLIPSEEK_NO_EXPORT", raising=False)
    first = runner.invoke(app, ["index", str(photos)])
    assert first.exit_code == 0, first.output
    assert "Fast path ready" in first.output
    again = runner.invoke(app, ["index", str(photos), "--rebuild"])
    assert again.exit_code == 0 and "Preparing the fast path" not in again.output
    info = runner.invoke(app, ["info", "--json"])
    payload = json.loads(info.stdout)
    assert payload["indexes"][0]["fast_path"] is True
    query = runner.invoke(app, ["query", "a red circle", "--json"])
    assert query.exit_code == 0 and "Preparing" not in query.output
    assert len(json.loads(query.stdout)["results"]) == 5


def test_cli_reports_a_failed_export_once(
    runner, cli_env: Path, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clipseek.cli.app import app
    from clipseek.models import export as export_mod

    def broken(model, **_kw):
        raise export_mod.ExportError("The disk is full.")

    monkeypatch.delenv("CLIPSEEK_NO_EXPORT", raising=False)
    monkeypatch.setattr(export_mod, "export_model", broken)
    first = runner.invoke(app, ["index", str(photos)])
    assert first.exit_code == 0 and "The disk is full." in first.output
    assert "Traceback" not in first.output
    query = runner.invoke(app, ["query", "a red circle"])
    assert query.exit_code == 0 and "disk is full" not in query.output
    assert "1 " in query.output  # answered through torch


@pytest.mark.slow  # several seconds of CPU
def test_backend_auto_measures_once_and_remembers(
    loaded_tiny_model, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clipseek.models import runtime
    from clipseek.models.export import export_model

    spec = loaded_tiny_model.spec
    # Without an export there is nothing to compare: torch now, the export comes after.
    first = runtime.load_index_model(spec, "cpu", "fp32", "auto")
    assert first.backend == "torch" and runtime.cached_choice(spec) is None
    export_model(loaded_tiny_model)
    measured: list[str] = []
    real = runtime.images_per_second

    def counted(model, *args, **kwargs):
        measured.append(model.backend)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(runtime, "images_per_second", counted)
    chosen = runtime.load_index_model(spec, "cpu", "fp32", "auto")
    assert sorted(measured) == ["onnx", "onnx", "torch", "torch"]  # interleaved, twice
    choice = runtime.cached_choice(spec)
    assert choice is not None and choice["backend"] == chosen.backend
    assert choice["onnx_fp32_images_per_s"] > 0 and choice["torch_fp32_images_per_s"] > 0
    again = runtime.load_index_model(spec, "cpu", "fp32", "auto")
    assert again.backend == chosen.backend and len(measured) == 4  # not measured again
    assert runtime.load_index_model(spec, "cpu", "fp32", "torch").backend == "torch"
    assert runtime.load_index_model(spec, "cpu", "fp32", "onnx").backend == "onnx"


def test_int8_is_explicit_and_agrees_roughly(loaded_tiny_model) -> None:
    from clipseek.errors import DeviceError
    from clipseek.models import runtime
    from clipseek.models.export import IMAGE_INT8_FILE, export_model

    spec = resolve_model(fixture_model_spec())
    shapes = load_model(spec, device="cpu", precision="fp32")
    export = export_model(shapes)
    assert not export.path(IMAGE_INT8_FILE).exists()  # never made unless asked for
    int8 = runtime.load_index_model(spec, "auto", "int8", "auto")
    assert int8.backend == "onnx" and int8.precision == "int8"
    images = _images()
    v8 = int8.encode_prepared([int8.prepare(i) for i in images])
    v32 = shapes.encode_prepared([shapes.prepare(i) for i in images])
    assert np.allclose(np.linalg.norm(v8, axis=1), 1, atol=1e-4)
    assert (v8 * v32).sum(1).min() > 0.9
    assert export.path(IMAGE_INT8_FILE).exists()
    with pytest.raises(DeviceError, match="CPU"):
        runtime.load_index_model(spec, "cuda", "int8", "auto")
    # A reader never uses int8: its text and image queries stay fp32.
    reader = runtime.load_reader_model(spec, "auto", "int8", "auto")
    assert reader.backend == "onnx" and reader.precision == "fp32"


def test_cli_backend_option_is_checked(runner, cli_env: Path, photos: Path) -> None:
    from clipseek.cli.app import app

    bad = runner.invoke(app, ["index", str(photos), "--backend", "tpu"])
    assert bad.exit_code == 1 and "Unknown backend 'tpu'" in bad.output
    ok = runner.invoke(app, ["index", str(photos), "--backend", "onnx"])
    assert ok.exit_code == 0, ok.output
    assert "12 new" in ok.output


def test_set_threads_takes_effect_from_the_next_batch(loaded_tiny_model) -> None:
    from clipseek.models.export import export_model
    from clipseek.models.onnx_backend import OnnxModel

    fast = OnnxModel(loaded_tiny_model.spec, export_model(loaded_tiny_model))
    items = [fast.prepare(i) for i in _images()]
    first = fast.encode_prepared(items)
    for threads in (1, 2, 3):
        fast.set_threads(threads)
        assert fast.threads == threads
        again = fast.encode_prepared(items)
        assert np.allclose(first, again, atol=1e-5)
        session = fast._sessions[("image", threads)]
        assert session.get_session_options().intra_op_num_threads == threads
    assert len([k for k in fast._sessions if k[0] == "image"]) == 1  # each holds the weights


@pytest.mark.slow  # a clipseek process
def test_a_query_that_fails_early_waits_for_the_session_it_was_building(tmp_path, tiny_model):
    """The ONNX session builds on a thread while the index opens; when the index is missing
    the process must still end cleanly, after that thread (a daemon thread torn down inside
    ONNX Runtime aborted the process: "terminate called…", exit -6)."""
    import subprocess
    import sys

    from tests.support.processes import cli_env

    env = cli_env(tmp_path, tiny_model, tmp_path / "no-index-here")
    built = tmp_path / "session-built"
    script = (
        "import sys, time, pathlib\n"
        "from clipseek import engine\n"
        "original = engine.Engine.model\n"
        "def slow(self, *a, **k):\n"
        "    time.sleep(1.5)\n"
        "    model = original(self, *a, **k)\n"
        f"    pathlib.Path({str(built)!r}).write_text(model.backend)\n"
        "    return model\n"
        "engine.Engine.model = slow\n"
        "sys.argv = ['clipseek', 'query', 'a red square']\n"
        "from clipseek.cli.entry import main\n"
        "main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1, result.stderr
    assert "There is no index" in " ".join(result.stderr.split()), result.stderr
    assert "terminate called" not in result.stderr and "Traceback" not in result.stderr
    assert built.read_text() == "onnx"  # the warm thread ran to its end before the exit
