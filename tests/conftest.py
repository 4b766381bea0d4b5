"""Shared fixtures: an isolated, offline environment, a tiny CLIP model, the app's library;
and the check that keeps the quick tier quick.

Every test runs with HF_HUB_OFFLINE=1 and with HOME/XDG folders pointing into a
temporary directory, so nothing reads the developer's own index or config and
nothing can reach the network. Helpers that are not fixtures live in tests/support.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.files import Denier
from tests.support.pictures import make_photo

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["ANONYMIZED_TELEMETRY"] = "False"
# No automatic ONNX export after index runs and queries (seconds each, and module-scoped
# fixtures run before the XDG cache is isolated); tests of the fast path unset it.
os.environ["CLIPSEEK_NO_EXPORT"] = "1"

# --------------------------------------------------------------------------- the quick tier
# `pytest -m "not slow"` is the edit-test loop: it must stay under two minutes on two cores.
# A test that starts a Python process (`python -c`, `python -m clipseek`), a server or a
# browser is slow by nature, so one that does so without the `slow` mark fails here,
# whatever else it asserts. Libraries' own quick helpers (ldconfig when torch loads, a
# clipboard command) are left alone.

_SPAWNED = pytest.StashKey[list[str]]()
_REPORTED = pytest.StashKey[bool]()
_HEAVY_PROGRAMS = {"chroma", "chromium", "chromium-browser", "chromedriver", "clipseek"}


def _heavy_program(args: object) -> str | None:
    """The name of the program ``Popen`` was asked to start, if it is one of the slow kind."""
    import sys

    program = args if isinstance(args, str | bytes | os.PathLike) else next(iter(args), "")
    name = os.path.basename(os.fsdecode(program))
    python = os.path.basename(sys.executable)
    if name == python or name.startswith("python") or name in _HEAVY_PROGRAMS:
        return name
    return None


def _spawn_guards(record):
    """(owner, attribute, replacement) for each way a test could start a slow process or a
    server: each replacement records what was started, then refuses."""
    import multiprocessing.process
    import socket
    import subprocess

    def refused(what: str):
        def refuse(*args, **kwargs):
            record(what)
            raise AssertionError(f"{what} in a test without @pytest.mark.slow")

        return refuse

    real_execute_child = subprocess.Popen._execute_child

    def execute_child(self, args, *rest, **kwargs):
        name = _heavy_program(args)
        if name is not None:
            refused(f"a {name} process")()
        return real_execute_child(self, args, *rest, **kwargs)

    return [
        (subprocess.Popen, "_execute_child", execute_child),
        (multiprocessing.process.BaseProcess, "start", refused("a multiprocessing process")),
        (socket.socket, "listen", refused("a listening socket (a server)")),
    ]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    if item.get_closest_marker("slow") is not None:
        return (yield)
    spawned = item.stash.setdefault(_SPAWNED, [])
    with pytest.MonkeyPatch.context() as patch:
        for owner, name, replacement in _spawn_guards(spawned.append):
            patch.setattr(owner, name, replacement)
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Fail a test that tried to start a process unmarked, even where the code under test
    caught the refusal and went on (once, in the phase that saw it)."""
    report = yield
    spawned = item.stash.get(_SPAWNED, [])
    if not spawned or item.stash.get(_REPORTED, False):
        return report
    item.stash[_REPORTED] = True
    if not report.failed:
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} started {', '.join(sorted(set(spawned)))}: mark it "
            "@pytest.mark.slow (the quick tier, pytest -m 'not slow', runs no processes "
            "or servers; see DEVELOPERS.md)"
        )
    return report


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
    from tests.support.processes import share_exports

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


@pytest.fixture
def denier(monkeypatch: pytest.MonkeyPatch) -> Iterator[Denier]:
    """Makes files and folders unreadable for the test (see :class:`Denier`)."""
    d = Denier(monkeypatch)
    yield d
    d.restore()


# --------------------------------------------------------------------------- the app


@pytest.fixture
def fixed_cells(monkeypatch: pytest.MonkeyPatch) -> None:
    """textual-image asks the terminal for its cell size; pin it, and the time zone (app
    test modules use it for every test: ``pytest.mark.usefixtures("fixed_cells")``)."""
    from textual_image._terminal import CellSize, get_cell_size

    monkeypatch.setattr(get_cell_size, "_result", CellSize(10, 20), raising=False)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, loaded_tiny_model):
    """A home folder with ~/Pictures indexed into ~/.local/share/clipseek/index (read-only):
    the app's library, indexed once per module."""
    import shutil

    from tests.support.app import APP_LIBRARY, make_pictures
    from tests.support.engines import engine_with, settings_for

    home = tmp_path_factory.mktemp("library") / "home"
    make_pictures(home / "Pictures", APP_LIBRARY)
    model_dir = home / "models" / "tiny-clip"
    shutil.copytree(tiny_model_dir, model_dir)
    db = home / ".local" / "share" / "clipseek" / "index"
    settings = settings_for(model_dir, db)
    summary = engine_with(settings, loaded_tiny_model).index([home / "Pictures"])
    assert summary.new == len(APP_LIBRARY) and not summary.failed
    return home, settings


@pytest.fixture
def at_home(library, monkeypatch: pytest.MonkeyPatch):
    """Run with HOME at the library's home, so paths on screen are ``~/...``."""
    home, settings = library
    monkeypatch.setenv("HOME", str(home))
    return settings
