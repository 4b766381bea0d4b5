"""Which heavy modules each front end imports (checked in fresh processes via sys.modules).

Importing torch and open_clip costs seconds and over a gigabyte; chromadb over a second.
A cold query through the ONNX fast path must import none of torch, open_clip and
chromadb (it reads the index files itself, see store/direct.py), the
help must import none of the three, and the engine must not drag in a front end's toolkit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.probes import cli_code, run_python

pytestmark = pytest.mark.slow  # each test starts a fresh interpreter


def _modules_after(code: str, env: dict[str, str] | None = None) -> tuple[frozenset[str], str]:
    """The top-level modules ``code`` left imported in a fresh interpreter, and its output."""
    ran = run_python(code, env=env)
    assert ran.returncode == 0, ran.output
    return ran.modules, ran.output


def test_help_imports_no_torch_open_clip_or_chromadb() -> None:
    modules, _ = _modules_after(cli_code(["--help"]))
    assert not modules & {"torch", "open_clip", "chromadb", "onnxruntime", "textual"}


def test_engine_modules_import_no_face_toolkit() -> None:
    modules, _ = _modules_after(
        "import clipseek.engine, clipseek.indexing.pipeline, clipseek.search.query, "
        "clipseek.store, "
        "clipseek.models, clipseek.models.export, clipseek.models.onnx_backend, "
        "clipseek.models.runtime, clipseek.models.tokenizer, clipseek.config, clipseek.store.lock"
    )
    assert not modules & {"typer", "textual", "rich", "fastapi", "uvicorn"}
    assert not modules & {"torch", "open_clip", "chromadb", "onnxruntime"}


@pytest.fixture
def fast_index(loaded_tiny_model, tiny_model: str, photos: Path, tmp_path: Path) -> dict[str, str]:
    """An index of the photos and a ready export of the tiny model, in the isolated
    HOME/XDG folders that the child processes inherit."""
    from clipseek.config import load_settings
    from clipseek.engine import Engine
    from clipseek.models.export import export_model

    db = tmp_path / "db"
    settings = load_settings({"model": tiny_model, "db": db})
    Engine(settings, model_loader=lambda *_: loaded_tiny_model).index([photos])
    export_model(loaded_tiny_model)
    return {"CLIPSEEK_DB": str(db), "CLIPSEEK_MODEL": tiny_model}


def test_cold_text_query_through_the_fast_path_imports_no_torch_nor_chromadb(fast_index) -> None:
    modules, output = _modules_after(cli_code(["query", "a red circle", "--json"]), fast_index)
    results = json.loads(next(ln for ln in output.splitlines() if ln.startswith("{")))
    assert len(results["results"]) == 5
    assert "onnxruntime" in modules
    assert not modules & {"torch", "open_clip", "torchvision", "timm", "chromadb"}


def test_cold_image_and_compound_queries_import_no_torch_nor_chromadb(
    fast_index, photos: Path
) -> None:
    example = str(photos / "city.png")
    modules, output = _modules_after(
        cli_code(["query", "--image", example, "a red circle", "-", "blurry", "--json"]), fast_index
    )
    results = json.loads(next(ln for ln in output.splitlines() if ln.startswith("{")))
    assert results["results"]
    assert not modules & {"torch", "open_clip", "torchvision", "timm", "chromadb"}


def test_models_and_info_show_the_fast_path_without_torch(fast_index) -> None:
    modules, output = _modules_after(cli_code(["info", "--json"]), fast_index)
    payload = json.loads(next(ln for ln in output.splitlines() if ln.startswith("{")))
    assert payload["indexes"][0]["fast_path"] is True
    assert payload["indexes"][0]["fast_path_bytes"] > 0
    assert not modules & {"torch", "open_clip", "chromadb"}


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_a_cpu_index_run_on_the_fast_path_imports_no_torch(
    fast_index, photos: Path, tiny_model: str, device: str
) -> None:
    """Where ONNX Runtime measured faster on this CPU, an index run never imports torch
    (it cost 7–9 s of every run's start, asking torch whether there is a GPU)."""
    from PIL import Image

    from clipseek.models import resolve_model
    from clipseek.models.hardware import resolve_precision, surely_no_gpu
    from clipseek.models.runtime import STARTUP_KEYS, _store_choice

    if device == "auto" and not surely_no_gpu():
        pytest.skip("this machine has a GPU driver: auto asks torch")
    # ONNX Runtime measured faster, start-up included (a CPU with native bf16 weighs both).
    measured = resolve_precision("auto", "cpu")
    choice = {"backend": "onnx", "precision": "fp32", "torch_precision": measured}
    choice |= {"onnx_fp32_images_per_s": 50.0, f"torch_{measured}_images_per_s": 10.0}
    choice |= dict.fromkeys(STARTUP_KEYS, 1.0)
    _store_choice(resolve_model(tiny_model), choice)
    Image.new("RGB", (40, 30), (10, 200, 30)).save(photos / "new-green.png")
    env = {**fast_index, "CLIPSEEK_DEVICE": device}
    modules, output = _modules_after(cli_code(["index", str(photos)]), env)
    assert "1 new" in output, output
    assert "onnxruntime" in modules
    assert not modules & {"torch", "open_clip", "torchvision", "timm"}
