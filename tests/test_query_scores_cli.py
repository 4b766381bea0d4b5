"""`clipseek query`: each hit of a plain text query says how good a match it is, on the
model family's scale, as the app and the web page do (clipseek.models.calibration)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clipseek.cli.app import app
from clipseek.models.calibration import CLIP_FITS, CLIP_HALF_WIDTH, VERDICTS, WEAKEST

WORDS = {word for _, word in VERDICTS} | {WEAKEST}


@pytest.fixture
def indexed(runner: CliRunner, cli_env: Path, photos: Path) -> Path:
    result = runner.invoke(app, ["index", str(photos)])
    assert result.exit_code == 0, result.output
    return photos


def _hits(runner: CliRunner, *args: str) -> list[dict]:
    result = runner.invoke(app, ["query", *args, "--json", "-k", "6"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["results"]


def test_text_hits_carry_match_and_verdict_on_the_family_scale(
    runner: CliRunner, indexed: Path
) -> None:
    hits = _hits(runner, "a red circle")
    assert len(hits) == 6
    for hit in hits:
        # The tiny stand-in is a CLIP: its cosines are read on CLIP's band (0.28 ± 0.12).
        expected = min(1.0, max(0.0, 0.5 + (hit["score"] - CLIP_FITS) / (2 * CLIP_HALF_WIDTH)))
        assert hit["match"] == pytest.approx(expected, abs=1e-3)
        floor = next((f for f, word in VERDICTS if word == hit["verdict"]), 0.0)
        assert hit["verdict"] in WORDS and hit["match"] >= floor - 1e-3
    assert [h["match"] for h in hits] == sorted((h["match"] for h in hits), reverse=True)


@pytest.mark.parametrize(
    "args",
    [("--image", "city.png"), ("a cat", "-", "blurry")],
    ids=["by-example", "with-a-minus"],
)
def test_other_queries_carry_no_match(runner: CliRunner, indexed: Path, args) -> None:
    """A search by example compares pictures with pictures, and a minus subtracts texts:
    no source puts those cosines on a scale, so there is no match to show (as the server)."""
    args = tuple(str(indexed / a) if a.endswith(".png") else a for a in args)
    hits = _hits(runner, *args)
    assert hits and all(h["match"] is None and h["verdict"] is None for h in hits)


def test_the_table_shows_the_verdict_beside_the_score_within_80_columns(
    runner: CliRunner, indexed: Path
) -> None:
    result = runner.invoke(app, ["query", "a red circle", "-k", "4"], terminal_width=80)
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    rows = [line for line in result.stdout.splitlines() if re.match(r"│ +\d+ │", line)]
    assert len(rows) == 4  # long paths fold onto more lines; each rank starts one row
    for row, hit in zip(rows, _hits(runner, "a red circle")[:4], strict=False):
        assert f"{hit['score']:.3f} {hit['verdict']}" in row
    by_example = runner.invoke(app, ["query", "--image", str(indexed / "city.png"), "-k", "3"])
    assert by_example.exit_code == 0, by_example.output
    assert not set(by_example.stdout.split()) & WORDS


def test_the_saved_json_carries_the_match_too(
    runner: CliRunner, indexed: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sheet.png"
    result = runner.invoke(app, ["query", "sunset", "-k", "3", "--save", str(out)])
    assert result.exit_code == 0, result.output
    saved = json.loads(out.with_suffix(".json").read_text())["results"]
    assert len(saved) == 3 and all(h["verdict"] in WORDS for h in saved)
