"""`clipseek models`: every suggested model with its figures, cheap to run, 80 columns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clipseek.cli.app import app
from clipseek.config import DEFAULT_MODEL
from clipseek.models.catalogue import CATALOG, SOURCES, CatalogEntry, pareto_optimal


@pytest.mark.slow  # a child process
def test_models_imports_neither_torch_nor_open_clip(isolated_env: Path) -> None:
    code = (
        "import sys\nfrom clipseek.cli.app import app\n"
        "sys.argv = ['clipseek', 'models']\n"
        "try:\n    app(prog_name='clipseek')\nexcept SystemExit:\n    pass\n"
        "print('HEAVY', [m for m in ('torch', 'open_clip', 'chromadb', 'onnxruntime') "
        "if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ)
    )
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout
    assert DEFAULT_MODEL in out.stdout


def test_every_suggested_model_is_shown_within_80_columns(runner: CliRunner) -> None:
    result = runner.invoke(app, ["models"], terminal_width=200)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    for entry in CATALOG:
        row = next(line for line in lines if line[1:].startswith(entry.name + " "))
        assert entry.licence in row and entry.languages in row
        assert str(entry.download_mb) in row
        if entry.xm3600 is not None:
            assert f"{entry.xm3600:.1f}" in row
        assert ("*" in row.split()) == pareto_optimal(CATALOG)[entry.name]
    in_use = next(line for line in lines if line.startswith(">"))
    assert in_use[1:].startswith(DEFAULT_MODEL + " ")
    assert f"In use: {DEFAULT_MODEL} (default)." in result.stdout
    assert "To move to the default" not in result.stdout
    # Someone who searches in another language is told which model, and what it costs.
    advice = " ".join(result.stdout.split())
    assert "Other languages: ViT-B-32-SigLIP2-256:webli" in advice
    assert "German 84.4" in advice and "630 MB" in advice


def test_json_rows_carry_figures_licence_languages_and_use(runner: CliRunner) -> None:
    rows = json.loads(runner.invoke(app, ["models", "--json"]).stdout)
    by_name = {r["name"]: r for r in rows}
    default = by_name[DEFAULT_MODEL]
    assert default["in_use"] and default["in_use_source"] == "default"
    assert default["xm3600"] == 68.8 and default["flickr_r1"] == 66.8
    assert default["licence"] == "MIT" and default["languages"] == "en"
    assert by_name["ViT-B-32-SigLIP2-256:webli"]["languages"] == "multi"
    assert by_name["ViT-B-32-SigLIP2-256:webli"]["family"] == "siglip"
    assert sum(r["in_use"] for r in rows) == 1
    assert not any(r["offline"] or r["images_per_s"] for r in rows)


def test_a_remembered_measurement_and_the_models_source_are_shown(
    runner: CliRunner, monkeypatch
) -> None:
    from clipseek.models import resolve_model
    from clipseek.models.runtime import _store_choice

    _store_choice(
        resolve_model("ViT-B/32"),
        {"backend": "torch", "precision": "bf16", "torch_bf16_images_per_s": 31.5},
    )
    monkeypatch.setenv("CLIPSEEK_MODEL", "ViT-B/32")
    result = runner.invoke(app, ["models"])
    row = next(line for line in result.stdout.splitlines() if line.startswith(">"))
    assert row[1:].startswith("ViT-B/32 ") and "31.5" in row
    assert "In use: ViT-B/32 ($CLIPSEEK_MODEL)." in result.stdout
    assert f"clipseek index --model {DEFAULT_MODEL} FOLDERS" in result.stdout.replace("\n", " ")
    rows = json.loads(runner.invoke(app, ["models", "--json"]).stdout)
    mine = next(r for r in rows if r["name"] == "ViT-B/32")
    assert mine["images_per_s"] == 31.5 and mine["backend"] == "torch bf16"


def test_the_index_model_is_shown_as_in_use_with_its_reason(settings, photos: Path) -> None:
    from clipseek.engine import Engine

    Engine(replace(settings, sources={})).index([photos])
    runner = CliRunner()
    result = runner.invoke(app, ["models", "--db", str(settings.db)])
    assert result.exit_code == 0, result.output
    first = result.stdout.replace("\n", " ")
    assert f"In use: {settings.model} (the index's model; the default is {DEFAULT_MODEL})" in first
    assert not any(line.startswith(">") and line[1] != " " for line in result.stdout.splitlines())


def _entry(name: str, **figures) -> CatalogEntry:
    base = CATALOG[0]
    return replace(base, name=name, **figures)


def test_pareto_marks_only_models_nothing_beats() -> None:
    a = _entry("a", xm3600=70.0, flickr_r1=None, coco_r1=None, cpu_ms=2.0, download_mb=600)
    worse = _entry("worse", xm3600=60.0, flickr_r1=None, coco_r1=None, cpu_ms=2.0, download_mb=610)
    slower_better = _entry("b", xm3600=75.0, flickr_r1=None, coco_r1=None, cpu_ms=6.0)
    unrelated = _entry("c", xm3600=None, flickr_r1=60.0, coco_r1=None, cpu_ms=None)
    marks = pareto_optimal([a, worse, slower_better, unrelated])
    assert marks == {"a": True, "worse": False, "b": True, "c": True}
    # Measured costs replace the published ones when every model has one.
    measured = pareto_optimal([a, worse], {"a": 100.0, "worse": 10.0})
    assert measured == {"a": True, "worse": True}


def test_every_figure_names_its_source() -> None:
    assert set(SOURCES) == {"xm3600", "flickr", "coco"}
    docs = (Path(__file__).resolve().parent.parent / "docs" / "MODELS.md").read_text()
    for entry in CATALOG:
        assert entry.name in docs
        for figure in (entry.xm3600, entry.flickr_r1, entry.coco_r1):
            if figure is not None:
                assert f"{figure:.1f}" in docs
