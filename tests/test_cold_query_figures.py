"""A cold `clipseek query` through the fast path remembers what it cost on this machine,
and `clipseek models` shows it (the figures rule (b) of docs/MODELS.md is about)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support.probes import run_python

pytestmark = pytest.mark.slow  # each test starts fresh `clipseek` processes

#: The console script, as a user starts it: one command in a fresh process.
CONSOLE = (
    "import sys\nfrom clipseek.cli.entry import main\n"
    "sys.argv = ['clipseek', *sys.argv[1:]]\nmain()\n"
)


@pytest.fixture
def fast_index(loaded_tiny_model, tiny_model: str, photos: Path, tmp_path: Path) -> dict[str, str]:
    """An index of the photos and a ready export of the tiny model, in this test's own
    cache folder (the child processes inherit it): their queries take the fast path."""
    from clipseek.config import load_settings
    from clipseek.engine import Engine
    from clipseek.models.export import export_model

    db = tmp_path / "db"
    settings = load_settings({"model": tiny_model, "db": db})
    Engine(settings, model_loader=lambda *_: loaded_tiny_model).index([photos])
    export_model(loaded_tiny_model)
    return {"CLIPSEEK_DB": str(db), "CLIPSEEK_MODEL": tiny_model}


def _query(env: dict[str, str], *args: str) -> dict:
    ran = run_python(CONSOLE, "query", *args, "--json", env=env)
    assert ran.returncode == 0, ran.output
    assert not ran.modules & {"torch", "open_clip"}  # the fast path, as measured
    return json.loads(ran.stdout)


def test_a_cold_query_is_remembered_and_shown_by_models(
    fast_index: dict[str, str], tiny_model: str, photos: Path, monkeypatch
) -> None:
    from clipseek.cli import models_table
    from clipseek.cli.app import app
    from clipseek.models import resolve_model
    from clipseek.models.catalogue import CATALOG
    from clipseek.models.runtime import _choices_file, cold_query

    spec = resolve_model(tiny_model)
    # A damaged file of remembered figures breaks neither the query nor the record.
    _choices_file().parent.mkdir(parents=True, exist_ok=True)
    _choices_file().write_text("{damaged", encoding="utf-8")

    answer = _query(fast_index, "a red circle")
    assert answer["results"] and all(h["verdict"] for h in answer["results"])
    figures = cold_query(spec)
    assert figures is not None and figures.runs == 1
    # Sane, not timed: a process's age and CPU time are positive, and its peak memory
    # holds at least the interpreter and ONNX Runtime's session.
    assert figures.seconds > 0 and figures.cpu_seconds > 0
    assert 30 < figures.peak_mb < 4096

    # A search by example costs something else (the image tower): not recorded.
    by_example = _query(fast_index, "--image", str(photos / "city.png"))
    assert all(h["match"] is None and h["verdict"] is None for h in by_example["results"])
    assert cold_query(spec).runs == 1

    # `clipseek models` lists the catalogue: the tiny model stands in as one entry of it.
    stand_in = replace(CATALOG[0], name=tiny_model, hub="nobody/nothing")
    monkeypatch.setattr(models_table, "CATALOG", (*CATALOG, stand_in))
    for var, value in fast_index.items():
        monkeypatch.setenv(var, value)
    runner = CliRunner()
    rows = json.loads(runner.invoke(app, ["models", "--json"]).stdout)
    mine = next(r for r in rows if r["name"] == tiny_model)
    assert mine["in_use"] and mine["fast_path"]
    assert mine["cold_query_s"] == round(figures.seconds, 3)
    assert mine["cold_query_peak_mb"] == round(figures.peak_mb, 1)
    assert not any(r["cold_query_runs"] for r in rows if r is not mine)
    table = runner.invoke(app, ["models"], terminal_width=200).stdout.splitlines()
    measured = [line for line in table if line.startswith(">")][1]
    cells = measured.split()
    assert cells[-3:] == [f"{figures.seconds:.2f}", f"{figures.peak_mb:.0f}", "fast"]
