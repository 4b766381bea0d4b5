"""Shared fixtures: an isolated, offline environment and a tiny CLIP model.

Every test runs with HF_HUB_OFFLINE=1 and with HOME/XDG folders pointing into a
temporary directory, so nothing reads the developer's own index or config and
nothing can reach the network.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["ANONYMIZED_TELEMETRY"] = "False"
# No automatic ONNX export after index runs and queries (seconds each, and module-scoped
# fixtures run before the XDG cache is isolated); tests of the fast path unset it.
os.environ["CLIPSEEK_NO_EXPORT"] = "1"

_ISOLATED_VARS = (
    "CLIPSEEK_DB",
    "CLIPSEEK_MODEL",
    "CLIPSEEK_DEVICE",
    "CLIPSEEK_BATCH_SIZE",
    "CLIPSEEK_PRECISION",
    "CLIPSEEK_CHROMA_URL",
    "CLIPSEEK_MAX_MEGAPIXELS",
    "CLIPSEEK_PREVIEW",
    "CLIPSEEK_DEBUG",
    "CLIPSEEK_CONFIG",
)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HOME, config, data and HF cache for each test."""
    home = tmp_path_factory.mktemp("home")
    for var in _ISOLATED_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("HF_HOME", str(home / ".cache" / "huggingface"))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / ".cache" / "huggingface" / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(home / ".cache" / "huggingface" / "hub"))
    return home


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random open_clip model in a ``local-dir:`` folder (built once per session)."""
    from clipseek.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-clip"), seed=0)


@pytest.fixture
def tiny_model(tiny_model_dir: Path) -> str:
    return f"local-dir:{tiny_model_dir}"


@pytest.fixture(scope="session")
def loaded_tiny_model(tiny_model_dir: Path):
    """The tiny model loaded once, fp32 on the CPU, for tests that embed directly."""
    from clipseek.models import load_model, resolve_model

    return load_model(resolve_model(f"local-dir:{tiny_model_dir}"), device="cpu", precision="fp32")


def make_photo(path: Path, size: tuple[int, int] = (96, 64), seed: int = 0, fmt: str | None = None):
    """A small photo-like picture: gradient background, shapes and noise, varying by seed."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    w, h = size
    base = tuple(rng.randrange(256) for _ in range(3))
    img = Image.new("RGB", size, base)
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = rng.randrange(w), rng.randrange(h)
        x1, y1 = x0 + rng.randrange(5, w), y0 + rng.randrange(5, h)
        color = tuple(rng.randrange(256) for _ in range(3))
        if rng.random() < 0.5:
            draw.ellipse([x0, y0, x1, y1], fill=color)
        else:
            draw.rectangle([x0, y0, x1, y1], fill=color)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt)
    return path


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A folder of 12 small images in several formats and a subfolder."""
    root = tmp_path / "photos"
    names = [
        "beach.jpg",
        "city.png",
        "forest.jpeg",
        "cat.webp",
        "dog.bmp",
        "sunset.tif",
        "sub/a.jpg",
        "sub/b.png",
        "sub/deeper/c.jpg",
        "sub/deeper/d.gif",
        "UPPER.JPG",
        "with space.png",
    ]
    for i, name in enumerate(names):
        make_photo(root / name, size=(64 + 8 * i, 48 + 4 * i), seed=i)
    return root


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "db"


@pytest.fixture
def settings(tiny_model: str, db_path: Path):
    from clipseek.config import load_settings

    return load_settings({"model": tiny_model, "db": db_path, "device": "cpu", "precision": "fp32"})


@pytest.fixture
def engine(settings) -> Iterator:
    from clipseek.engine import Engine

    yield Engine(settings)


@pytest.fixture
def runner():
    """Typer's CliRunner, for invoking commands in-process."""
    from typer.testing import CliRunner

    return CliRunner()


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tiny_model: str, db_path: Path) -> Path:
    """The tiny model and a private index for every CLI command run in the test."""
    monkeypatch.setenv("CLIPSEEK_MODEL", tiny_model)
    monkeypatch.setenv("CLIPSEEK_DB", str(db_path))
    monkeypatch.setenv("CLIPSEEK_DEVICE", "cpu")
    monkeypatch.setenv("CLIPSEEK_PRECISION", "fp32")
    return db_path


@pytest.fixture
def fast_path(tiny_model: str) -> str:
    """The tiny model's ONNX export, ready in this test's cache: ``clipseek`` processes it
    starts take the fast path, as a user's do after the first index run (seconds faster
    than importing torch in every process)."""
    from tests.reliability_helpers import share_exports

    share_exports(Path(os.environ["XDG_CACHE_HOME"]), tiny_model)
    return tiny_model


@pytest.fixture
def decode_counter(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every file the indexer decodes."""
    from clipseek.indexing import pipeline as ix

    calls: list[str] = []
    real = ix.load_for_model

    def counting(path: str, *args, **kwargs):
        calls.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(ix, "load_for_model", counting)
    return calls
