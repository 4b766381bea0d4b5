from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from clipseek import __version__
from clipseek.cli.app import app
from tests.support.pictures import make_photo


@pytest.fixture
def indexed(runner: CliRunner, cli_env: Path, photos: Path) -> Path:
    result = runner.invoke(app, ["index", str(photos)])
    assert result.exit_code == 0, result.output
    return photos


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"clipseek {__version__}"


def test_help_lists_commands_and_query_grammar(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("index", "query", "info", "models"):
        assert command in result.stdout
    query_help = runner.invoke(app, ["query", "--help"], terminal_width=120)
    assert '"a cat" + "a hat" - "blurry"' in query_help.stdout
    assert "--top-k" in query_help.stdout and "--json" in query_help.stdout


@pytest.mark.slow  # seconds
def test_index_prints_summary_and_progress(runner: CliRunner, cli_env: Path, photos: Path) -> None:
    (photos / "broken.jpg").write_text("nope")
    result = runner.invoke(app, ["index", str(photos)])
    assert result.exit_code == 0, result.output
    assert "12 new, 0 updated, 0 unchanged, 0 removed, 1 failed" in result.stdout
    assert f"{photos / 'broken.jpg'}: a text file, not an image" in result.stderr
    assert "Traceback" not in result.output
    again = runner.invoke(app, ["index", str(photos)])
    assert "0 new, 0 updated, 12 unchanged, 0 removed, 1 failed" in again.stdout


def test_index_options(runner: CliRunner, cli_env: Path, photos: Path) -> None:
    make_photo(photos / ".hidden" / "h.png")
    result = runner.invoke(app, ["index", str(photos), "--exclude", "sub", "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    assert "8 new" in result.stdout
    result = runner.invoke(app, ["index", str(photos), "--include-hidden", "--rebuild"])
    assert "5 new, 8 updated" in result.stdout


def test_index_errors(runner: CliRunner, cli_env: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["index", str(tmp_path / "missing")])
    assert result.exit_code == 1
    assert "does not exist; nothing was indexed" in result.stderr
    result = runner.invoke(app, ["index", str(tmp_path), "--device", "tpu"])
    assert result.exit_code == 1 and "Unknown device 'tpu'" in result.stderr
    result = runner.invoke(app, ["index", str(tmp_path), "--model", "clip-huge"])
    assert result.exit_code == 1 and "Unknown model 'clip-huge'" in result.stderr


def test_query_table(runner: CliRunner, indexed: Path) -> None:
    result = runner.invoke(
        app, ["query", "a dog playing in the park", "--top-k", "3"], terminal_width=200
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if str(indexed) in line]
    assert len(lines) == 3
    assert "score" in result.stdout and "a dog playing in the park" in result.stdout


def test_query_json_is_exactly_json(runner: CliRunner, indexed: Path) -> None:
    result = runner.invoke(app, ["query", "a dog", "--json", "-k", "4"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload) == {"query", "model", "results", "total_results"}
    assert payload["total_results"] == 4 and len(payload["results"]) == 4
    assert [r["rank"] for r in payload["results"]] == [1, 2, 3, 4]
    scores = [r["score"] for r in payload["results"]]
    assert scores == sorted(scores, reverse=True)
    assert all(
        Path(r["path"]).is_absolute() and Path(r["path"]).exists() for r in payload["results"]
    )


def test_query_by_image_and_compound(runner: CliRunner, indexed: Path) -> None:
    target = indexed / "city.png"
    result = runner.invoke(app, ["query", "--image", str(target), "--json", "-k", "2"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["results"][0]["path"] == str(target)
    assert payload["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    compound = runner.invoke(app, ["query", "a cat", "+", "a hat", "-", "blurry", "--json"])
    assert compound.exit_code == 0, compound.output
    assert json.loads(compound.stdout)["query"] == '"a cat" + "a hat" - "blurry"'
    within = runner.invoke(app, ["query", "x", "--in", str(indexed / "sub"), "--json", "-k", "10"])
    assert {Path(r["path"]).parent.name for r in json.loads(within.stdout)["results"]} <= {
        "sub",
        "deeper",
    }


def test_query_save_writes_sheet_and_json(runner: CliRunner, indexed: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = runner.invoke(app, ["query", "sunset", "-k", "3", "--save", str(out)])
    assert result.exit_code == 0, result.output
    sheets = list(out.glob("*.png"))
    jsons = list(out.glob("*.json"))
    assert len(sheets) == 1 and len(jsons) == 1
    assert str(sheets[0]) in result.stderr.replace("\n", "")
    assert len(json.loads(jsons[0].read_text())["results"]) == 3
    with Image.open(sheets[0]) as sheet:
        assert sheet.width >= 3 * 256 and sheet.height > 256


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["query", ""], "The query is empty"),
        (["query", "   "], "The query is empty"),
        (["query"], "Give a text to search for"),
        (["query", "dog", "--top-k", "0"], "--top-k must be at least 1"),
        (["query", "dog", "--top-k", "-3"], "--top-k must be at least 1"),
        (["query", "dog", "--top-k", "99999999"], "--top-k must be at most"),
        (["query", "--image", "/no/such/cat.jpg"], "does not exist"),
    ],
)
def test_query_input_errors(
    runner: CliRunner, indexed: Path, args: list[str], message: str
) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_query_bad_image_file(runner: CliRunner, indexed: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a picture")
    result = runner.invoke(app, ["query", "--image", str(bad)])
    assert result.exit_code == 1
    assert "cannot be used: a text file, not an image" in result.stderr


def test_query_without_index(runner: CliRunner, cli_env: Path) -> None:
    result = runner.invoke(app, ["query", "a dog"])
    assert result.exit_code == 1
    assert "There is no index" in result.stderr and "clipseek index" in result.stderr


def test_model_mismatch_message(
    runner: CliRunner, indexed: Path, tmp_path: Path, tiny_model: str
) -> None:
    from clipseek.testing import build_tiny_model

    other = build_tiny_model(tmp_path / "other", seed=9)
    result = runner.invoke(app, ["query", "a dog", "--model", f"local-dir:{other}"])
    assert result.exit_code == 1
    assert "was built with" in result.stderr and tiny_model in result.stderr.replace("\n", "")


def test_offline_without_weights_is_one_clear_message(
    runner: CliRunner, cli_env: Path, photos: Path
) -> None:
    result = runner.invoke(app, ["index", str(photos), "--model", "ViT-B/32"], terminal_width=400)
    assert result.exit_code == 1
    assert "The weights for ViT-B/32 are not on this machine" in result.stderr
    assert "--model local-dir:PATH" in result.stderr
    assert "Traceback" not in result.output


def test_debug_shows_the_traceback(runner: CliRunner, cli_env: Path) -> None:
    result = runner.invoke(app, ["--debug", "query", "a dog"])
    assert result.exit_code != 0
    from clipseek.errors import IndexMissingError

    assert isinstance(result.exception, IndexMissingError)


def test_info(runner: CliRunner, indexed: Path, cli_env: Path, tiny_model: str) -> None:
    result = runner.invoke(app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["location"] == str(cli_env)
    (entry,) = payload["indexes"]
    assert (
        entry["images"] == 12 and entry["roots"] == [str(indexed)] and entry["model"] == tiny_model
    )
    table = runner.invoke(app, ["info"], terminal_width=200)
    assert "12" in table.stdout and tiny_model in table.stdout


def test_info_before_anything_is_indexed(runner: CliRunner, cli_env: Path) -> None:
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0
    assert "Nothing indexed yet" in result.stdout
    assert not cli_env.exists()


def test_models_marks_offline_availability(runner: CliRunner) -> None:
    from clipseek.models import hf_cache_dir
    from clipseek.testing import TINY_MODEL_CFG  # noqa: F401  (keeps the import cheap path honest)

    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["ViT-B/32"]["recall_at_1"] == 58.8 and rows["ViT-L/14"]["gflops"] == 162
    assert rows["ViT-B-32:laion2b_s34b_b79k"]["recall_at_1"] == 66.8
    assert not any(r["offline"] for r in rows.values())
    # A cached checkpoint flips the mark.
    repo = Path(hf_cache_dir()) / "models--timm--vit_base_patch32_clip_224.openai"
    (repo / "snapshots" / "abc").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc")
    (repo / "snapshots" / "abc" / "open_clip_model.safetensors").write_bytes(b"stub")
    rows = {r["name"]: r for r in json.loads(runner.invoke(app, ["models", "--json"]).stdout)}
    assert rows["ViT-B/32"]["offline"] and not rows["ViT-B/16"]["offline"]
    table = runner.invoke(app, ["models"], terminal_width=160)
    assert "ViT-B/32" in table.stdout and "58.8" in table.stdout
