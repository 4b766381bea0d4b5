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
    # Someone who searches in another language, or in English alone, is told which model,
    # and what it costs.
    advice = " ".join(result.stdout.split())
    assert "Languages: the default, ViT-B-32-SigLIP2-256:webli, understands many" in advice
    assert "German 84.4" in advice and "weaker in Chinese, Japanese" in advice
    assert "For English alone, ViT-B-32:laion2b_s34b_b79k" in advice and "240 MB" in advice


def test_json_rows_carry_figures_licence_languages_and_use(runner: CliRunner) -> None:
    rows = json.loads(runner.invoke(app, ["models", "--json"]).stdout)
    by_name = {r["name"]: r for r in rows}
    default = by_name[DEFAULT_MODEL]
    assert default["in_use"] and default["in_use_source"] == "default"
    assert default["xm3600"] == 73.2 and default["flickr_r1"] is None
    assert default["licence"] == "Apache-2.0" and default["languages"] == "multi"
    assert default["family"] == "siglip"
    previous = by_name["ViT-B-32:laion2b_s34b_b79k"]
    assert previous["xm3600"] == 68.8 and previous["flickr_r1"] == 66.8
    assert previous["languages"] == "en" and previous["family"] == "clip"
    assert sum(r["in_use"] for r in rows) == 1
    assert not any(r["offline"] or r["images_per_s"] for r in rows)


def test_a_remembered_measurement_and_the_models_source_are_shown(
    runner: CliRunner, monkeypatch
) -> None:
    from clipseek.models import resolve_model
    from clipseek.models.runtime import _store_choice, remember_cold_query

    _store_choice(
        resolve_model("ViT-B/32"),
        {"backend": "torch", "precision": "bf16", "torch_bf16_images_per_s": 31.5},
    )
    # Three cold queries through the fast path: their medians are shown.
    for seconds, peak in ((1.0, 300.0), (0.8, 250.0), (0.9, 260.0)):
        remember_cold_query(resolve_model("ViT-B/32"), seconds, seconds / 2, peak)
    monkeypatch.setenv("CLIPSEEK_MODEL", "ViT-B/32")
    result = runner.invoke(app, ["models"])
    published, measured = [line for line in result.stdout.splitlines() if line.startswith(">")][:2]
    assert published[1:].startswith("ViT-B/32 ") and "59.4" in published
    assert measured[1:].startswith("ViT-B/32 ")
    assert measured.split()[1:6] == ["31.5", "torch", "bf16", "0.90", "260"]
    assert "In use: ViT-B/32 ($CLIPSEEK_MODEL)." in result.stdout
    assert f"clipseek index --model {DEFAULT_MODEL} FOLDERS" in result.stdout.replace("\n", " ")
    rows = json.loads(runner.invoke(app, ["models", "--json"]).stdout)
    mine = next(r for r in rows if r["name"] == "ViT-B/32")
    assert mine["images_per_s"] == 31.5 and mine["backend"] == "torch bf16"
    assert mine["cold_query_s"] == 0.9 and mine["cold_query_peak_mb"] == 260.0
    assert mine["cold_query_cpu_s"] == 0.45 and mine["cold_query_runs"] == 3
    # The other models were never measured: a dash, and the legend says how to measure.
    unmeasured = next(line for line in result.stdout.splitlines()[12:] if " RN50 " in line)
    assert unmeasured.split()[1:] == ["—"] * 5
    assert "run one query with --model NAME" in " ".join(result.stdout.split())


def test_the_index_model_is_shown_as_in_use_with_its_reason(settings, photos: Path) -> None:
    from clipseek.engine import Engine

    Engine(replace(settings, sources={})).index([photos])
    runner = CliRunner()
    result = runner.invoke(app, ["models", "--db", str(settings.db)])
    assert result.exit_code == 0, result.output
    first = result.stdout.replace("\n", " ")
    assert f"In use: {settings.model} (the index's model; the default is {DEFAULT_MODEL})" in first
    assert not any(line.startswith(">") and line[1] != " " for line in result.stdout.splitlines())


def test_the_table_keeps_80_columns_with_every_figure_measured(
    runner: CliRunner, monkeypatch
) -> None:
    """The widest figures this machine could remember still fit, in both tables."""
    from clipseek.models import resolve_model
    from clipseek.models.runtime import _store_choice, remember_cold_query

    for entry in CATALOG:
        spec = resolve_model(entry.name)
        choice = {"backend": "torch", "precision": "bf16", "torch_bf16_images_per_s": 1234.5}
        _store_choice(spec, choice)
        remember_cold_query(spec, 12.345, 20.0, 12345.0)
    result = runner.invoke(app, ["models"], terminal_width=200)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    row = [line for line in lines if line[1:].startswith("RN50 ")][1]
    assert row.split()[1:] == ["1234.5", "torch", "bf16", "12.35", "12345", "—"]


@pytest.mark.parametrize(
    "damage",
    [
        "{not json",
        "[1, 2, 3]",
        '{"KEY": "a string"}',
        '{"KEY": {"backend": {"x": 1}, "cold_query": "lots"}}',
        '{"KEY": {"cold_query": [5, "x", {"seconds": "fast"}, {"seconds": -1, '
        '"cpu_seconds": 1, "peak_mb": 1}, {"seconds": NaN, "cpu_seconds": 1, "peak_mb": 1}]}}',
    ],
)
def test_damaged_remembered_figures_leave_the_table_working(runner: CliRunner, damage: str) -> None:
    """A damaged file of remembered figures reads as nothing measured, and the next cold
    query's figures replace what cannot be read."""
    from clipseek.models import resolve_model
    from clipseek.models.runtime import (
        _choices_file,
        _machine_key,
        cached_choice,
        cold_query,
        remember_cold_query,
    )

    spec = resolve_model(DEFAULT_MODEL)
    path = _choices_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(damage.replace("KEY", _machine_key(spec).replace('"', '\\"')))
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    measured = [line for line in result.stdout.splitlines() if line.startswith(">")][1]
    assert measured.split()[1:6] == ["—"] * 5
    rows = json.loads(runner.invoke(app, ["models", "--json"]).stdout)
    assert not any(r["cold_query_s"] or r["cold_query_runs"] for r in rows)
    assert cold_query(spec) is None

    remember_cold_query(spec, 0.5, 0.4, 200.0)
    figures = cold_query(spec)
    assert figures is not None and (figures.seconds, figures.peak_mb, figures.runs) == (
        0.5,
        200.0,
        1,
    )
    assert cached_choice(spec) is None  # cold-query figures alone are no runtime choice


def test_a_new_runtime_measurement_keeps_the_cold_query_figures() -> None:
    from clipseek.models import resolve_model
    from clipseek.models.runtime import (
        COLD_QUERY_RUNS,
        _store_choice,
        cached_choice,
        cold_query,
        remember_cold_query,
    )

    spec = resolve_model(DEFAULT_MODEL)
    for i in range(COLD_QUERY_RUNS + 2):  # only the latest are kept
        remember_cold_query(spec, 10.0 + i, 1.0, 100.0)
    _store_choice(spec, {"backend": "onnx", "precision": "fp32", "onnx_fp32_images_per_s": 9.0})
    figures = cold_query(spec)
    assert figures is not None and figures.runs == COLD_QUERY_RUNS
    assert figures.seconds == 10.0 + 2 + COLD_QUERY_RUNS // 2  # the median of the latest
    choice = cached_choice(spec)
    assert choice is not None and choice["onnx_fp32_images_per_s"] == 9.0


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
    # A cold query's time and memory count once measured for every model compared...
    same = _entry("same", xm3600=70.0, flickr_r1=None, coco_r1=None, cpu_ms=2.0, download_mb=600)
    assert pareto_optimal([a, same]) == {"a": True, "same": True}
    cold = {"a": (0.9, 250.0), "same": (2.5, 630.0)}
    assert pareto_optimal([a, same], cold=cold) == {"a": True, "same": False}
    # ...with figures within about 15% counted as equal (one run's noise)...
    assert pareto_optimal([a, same], cold={"a": (0.9, 250.0), "same": (0.95, 260.0)}) == {
        "a": True,
        "same": True,
    }
    # ...and not at all while one model lacks them.
    assert pareto_optimal([a, same], cold={"a": (0.9, 250.0)}) == {"a": True, "same": True}


def test_every_figure_names_its_source() -> None:
    assert set(SOURCES) == {"xm3600", "flickr", "coco"}
    docs = (Path(__file__).resolve().parent.parent / "docs" / "MODELS.md").read_text()
    for entry in CATALOG:
        assert entry.name in docs
        for figure in (entry.xm3600, entry.flickr_r1, entry.coco_r1):
            if figure is not None:
                assert f"{figure:.1f}" in docs
