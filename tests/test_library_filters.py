"""Dates, cameras and near-duplicates end to end: index real files with known EXIF, filter,
sort and group them, with the shipped shapes model (and the JSON faces scripts use)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from clipseek.search.filters import make_filters
from clipseek.testing import fixture_model_spec
from tests.support.pictures import EXIF_LIBRARY, plant_duplicates, write_exif_library


@pytest.fixture
def library_engine(tmp_path: Path):
    from clipseek.config import load_settings
    from clipseek.engine import Engine

    folder = tmp_path / "library"
    write_exif_library(folder)
    settings = load_settings(
        {"model": fixture_model_spec(), "db": tmp_path / "db", "device": "cpu", "precision": "fp32"}
    )
    engine = Engine(settings)
    assert engine.index([folder]).new == len(EXIF_LIBRARY)
    return engine, folder


def _names(response) -> list[str]:
    return [Path(r.path).name for r in response.results]


def test_date_and_camera_filters_are_exact_among_matches(library_engine) -> None:
    engine, _ = library_engine
    summer = make_filters("2024-06", "2024-09")
    assert set(_names(engine.search("a yellow circle", 10, filters=summer))) == {
        "beach-1.jpg",
        "beach-2.jpg",
        "blue.jpg",
    }
    # top-k stays exact inside the filter: the best yellow circle of the summer comes first
    top = engine.search("a yellow circle", 1, filters=summer)
    assert _names(top)[0] in {"beach-1.jpg", "beach-2.jpg"}
    pixel = make_filters(camera="PIXEL")
    assert set(_names(engine.search("a yellow circle", 10, filters=pixel))) == {
        "beach-1.jpg",
        "beach-2.jpg",
        "blue.jpg",
    }
    canon_2024 = make_filters(after="2024", camera="eos")
    assert _names(engine.search("a yellow circle", 10, filters=canon_2024)) == ["winter.jpg"]


def test_a_filter_that_matches_nothing_says_so(library_engine) -> None:
    engine, _ = library_engine
    response = engine.search("a yellow circle", 5, filters=make_filters(camera="hasselblad"))
    assert response.results == []
    assert "hasselblad" in response.notes[0] and "Pixel 7" in response.notes[0]
    response = engine.search("a yellow circle", 5, filters=make_filters("2030"))
    assert response.results == [] and "No indexed picture matches" in response.notes[0]


def test_sort_by_date_and_dates_in_results(library_engine) -> None:
    engine, _ = library_engine
    response = engine.search("a yellow circle", 6, sort="date")
    dated = [r for r in response.results if r.taken_source == "exif"]
    assert [r.taken_local for r in dated] == sorted(r.taken_local for r in dated)
    by_name = {Path(r.path).name: r for r in response.results}
    assert by_name["old.jpg"].taken == "2019-05-05T05:05:05"
    assert by_name["no-exif.jpg"].taken_source == "mtime"
    assert by_name["winter.jpg"].camera == "Canon EOS R5"


def test_cli_filters_json_and_bad_input(library_engine, runner, monkeypatch) -> None:
    from clipseek.cli.app import app

    engine, _ = library_engine
    monkeypatch.setenv("CLIPSEEK_DB", engine.store.location)
    monkeypatch.setenv("CLIPSEEK_MODEL", fixture_model_spec())
    result = runner.invoke(
        app, ["query", "a yellow circle", "--after", "2024-06", "--camera", "pixel", "--json"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    names = {Path(r["path"]).name for r in payload["results"]}
    assert names == {"beach-1.jpg", "beach-2.jpg", "blue.jpg"}
    assert all(
        r["taken"].startswith("2024-0") and "Pixel" in r["camera"] for r in payload["results"]
    )
    table = runner.invoke(app, ["query", "a yellow circle", "--camera", "canon", "--sort", "date"])
    assert table.exit_code == 0, table.output
    assert "taken" in table.stdout and "2019-05-05 05:05" in table.stdout
    # oldest first; a long path wraps inside its cell at 80 columns, so read the cells' text
    cells = re.sub(r"[\s│]", "", table.stdout)
    assert cells.index("old.jpg") < cells.index("winter.jpg")
    for args, needle in [
        (["--after", "last summer"], "YYYY-MM"),
        (["--min-size", "big"], "WIDTHxHEIGHT"),
        (["--sort", "name"], "--sort must be one of"),
    ]:
        bad = runner.invoke(app, ["query", "x", *args])
        assert bad.exit_code != 0 and needle in bad.output, bad.output
        assert "Traceback" not in bad.output


def test_older_index_learns_metadata_without_reembedding(tmp_path: Path, monkeypatch) -> None:
    from clipseek.config import load_settings
    from clipseek.engine import Engine
    from clipseek.models.torch_backend import ClipModel
    from clipseek.photos import metadata as photometa

    folder = tmp_path / "library"
    write_exif_library(folder)
    settings = load_settings(
        {"model": fixture_model_spec(), "db": tmp_path / "db", "device": "cpu", "precision": "fp32"}
    )

    class Nothing:
        problem = ""

        def metadata(self) -> dict:
            return {}

    with monkeypatch.context() as patch:  # an index built before clipseek read metadata
        patch.setattr(photometa, "meta_from_image", lambda *a, **k: Nothing())
        Engine(settings).index([folder])
    engine = Engine(settings)
    assert engine.search("x", 5, filters=make_filters(camera="pixel")).results == []

    calls = []
    real = ClipModel.encode_images
    monkeypatch.setattr(
        ClipModel, "encode_images", lambda self, b: calls.append(len(b)) or real(self, b)
    )
    notices = []
    summary = Engine(settings).index([folder], on_event=notices.append)
    assert calls == [] and summary.unchanged == len(EXIF_LIBRARY)
    assert any("dates and cameras" in getattr(n, "message", "") for n in notices)
    fresh = Engine(settings)
    assert len(fresh.search("x", 5, filters=make_filters(camera="pixel")).results) == 3


def test_near_duplicates_precision_and_recall(tmp_path: Path, runner, monkeypatch) -> None:
    from clipseek.cli.app import app
    from clipseek.config import load_settings
    from clipseek.engine import Engine

    folder = tmp_path / "dups"
    planted, singles = plant_duplicates(folder)
    settings = load_settings(
        {"model": fixture_model_spec(), "db": tmp_path / "db", "device": "cpu", "precision": "fp32"}
    )
    engine = Engine(settings)
    engine.index([folder])
    groups = engine.duplicates(0.95)
    found = [{Path(i.path).name for i in g.items} for g in groups]
    found_pairs = {frozenset((a, b)) for g in found for a in g for b in g if a < b}
    true_pairs = {frozenset((a, b)) for g in planted for a in g for b in g if a < b}
    precision = len(found_pairs & true_pairs) / max(1, len(found_pairs))
    recall = len(found_pairs & true_pairs) / len(true_pairs)
    # Measured with the shapes model: precision 1.0, recall 0.875 (one cropped copy of a
    # star falls just under 0.95); docs/PERFORMANCE.md has the figures.
    assert precision >= 0.9 and recall >= 0.8, (precision, recall, found)
    assert all(not (set(singles) & g) for g in found)
    assert [len(g.items) for g in groups] == sorted((len(g.items) for g in groups), reverse=True)
    assert all(g.items[0].width * g.items[0].height >= 320 * 240 for g in groups)

    # A large library takes the vector index's neighbour search instead: same groups.
    from clipseek.search import duplicates as dup

    with monkeypatch.context() as patch:
        patch.setattr(dup, "EXACT_LIMIT", 0)
        by_search = [{Path(i.path).name for i in g.items} for g in engine.duplicates(0.95)]
    assert sorted(map(sorted, by_search)) == sorted(map(sorted, found))

    monkeypatch.setenv("CLIPSEEK_DB", engine.store.location)
    monkeypatch.setenv("CLIPSEEK_MODEL", fixture_model_spec())
    result = runner.invoke(app, ["duplicates", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert len(payload["groups"]) == len(groups)
    assert all(
        set(folder.iterdir()) >= {Path(i["path"]) for i in g["items"]} for g in payload["groups"]
    )
    bad = runner.invoke(app, ["duplicates", "--threshold", "1.5"])
    assert bad.exit_code != 0 and "at most 1" in bad.output
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [n for g in planted for n in g] + singles
    )  # nothing deleted
