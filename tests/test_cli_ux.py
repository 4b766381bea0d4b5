"""What a hands-on trial of the command line found (issue 13)."""

from __future__ import annotations

import gc
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from clipseek.cli import entry
from clipseek.cli.app import app

COMMANDS = ["index", "query", "info", "models", "serve", "tui"]


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)])
def test_help_pages_name_values_not_python_types(runner, command) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    text = result.output
    for leak in ("<bool>", "<str>", "<int>", "<path>", "<float>", "list[", "range>", "x>="):
        assert leak not in text, (command, leak)
    if command == ["index"]:
        assert re.search(r"--workers\s+N\s+Decoder threads, 1 to 1024", text)
        assert "Usage: clipseek index [OPTIONS] FOLDERS..." in text
        assert re.search(r"--db\s+FOLDER", text)


def test_bare_clipseek_takes_the_app_options(monkeypatch) -> None:
    assert entry.app_options([]) == {}
    assert entry.app_options(["--preview", "unicode", "--db", "/x", "-m", "RN50"]) == {
        "preview": "unicode",
        "db": "/x",
        "model": "RN50",
    }
    assert entry.app_options(["--db=/x"]) == {"db": "/x"}
    assert entry.app_options(["query", "x"]) is None
    assert entry.app_options(["--db"]) is None  # the CLI says the value is missing
    assert entry.app_options(["--help"]) is None

    opened = []
    import clipseek.tui

    monkeypatch.setattr(
        clipseek.tui, "run_tui", lambda settings, preview=None: opened.append((settings, preview))
    )
    monkeypatch.setattr(sys, "argv", ["clipseek", "--preview", "unicode", "--db", "/tmp/x"])
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    # main() ends the process's garbage collection (gc.freeze): not this test process's.
    monkeypatch.setattr(entry, "leave_quickly", lambda: None)
    with pytest.raises(SystemExit) as exit_:
        entry.main()
    assert exit_.value.code == 0
    assert gc.isenabled()  # taken for the start, given back though the app never booted
    ((settings, preview),) = opened
    assert preview == "unicode" and settings.db == Path("/tmp/x")


def test_root_options_reach_the_app_and_the_commands(runner, monkeypatch, tmp_path) -> None:
    import clipseek.cli.app as cli

    seen = []
    monkeypatch.setattr(cli, "_run_tui", lambda preview=None, **flags: seen.append(preview))
    monkeypatch.setattr(cli, "_interactive", lambda: True)
    result = runner.invoke(app, ["--preview", "unicode", "--db", str(tmp_path / "x")])
    assert result.exit_code == 0, result.output
    assert seen == ["unicode"]
    info = runner.invoke(app, ["--db", str(tmp_path / "elsewhere"), "info", "--json"])
    assert info.exit_code == 0, info.output
    assert json.loads(info.stdout)["location"] == str(tmp_path / "elsewhere")


def _complete(words: str, cword: int) -> list[str]:
    env = dict(
        os.environ,
        _CLIPSEEK_COMPLETE="complete_bash",
        COMP_WORDS=words,
        COMP_CWORD=str(cword),
        PYTHONPATH=str(Path(__file__).parent.parent),
    )
    out = subprocess.run(
        [sys.executable, "-m", "clipseek"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


@pytest.mark.slow  # clipseek processes
def test_shell_completion_offers_commands_options_models_and_paths(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "Pictures" / "holiday").mkdir(parents=True)
    (tmp_path / "Pictures" / "cat.jpg").write_bytes(b"")
    assert "index" in _complete("clipseek in", 1)
    assert "--top-k" in _complete("clipseek query --to", 2)
    offered = _complete("clipseek query --model ViT-B", 3)
    assert offered[:3] == ["ViT-B-32-SigLIP2-256:webli", "ViT-B-32:laion2b_s34b_b79k", "ViT-B/32"]
    folders = _complete(f"clipseek index {tmp_path}/Pic", 2)
    assert folders == [f"{tmp_path}/Pictures/"]
    assert _complete(f"clipseek index {tmp_path}/Pictures/", 2) == [f"{tmp_path}/Pictures/holiday/"]
    files = _complete(f"clipseek query --image {tmp_path}/Pictures/", 3)
    assert f"{tmp_path}/Pictures/cat.jpg" in files
    # Typer finds the shell from the process tree (shellingham), which depends on how the
    # test run was started; the script for bash is what this test is about.
    import typer.completion

    monkeypatch.setattr(typer.completion, "_get_shell_name", lambda: "bash")
    script = runner_output(["--show-completion", "bash"])
    assert "_CLIPSEEK_COMPLETE" in script


def runner_output(args: list[str]) -> str:
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, args, env={"SHELL": "/bin/bash"})
    assert result.exit_code == 0, result.output
    return result.output


def test_models_shows_whole_names_and_errors_name_only_listed_ones(runner) -> None:
    from clipseek.models import CATALOG, CLASSIC_MODELS

    result = runner.invoke(app, ["models"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    for entry_ in CATALOG:
        assert entry_.name in result.output
    bad = runner.invoke(app, ["query", "x", "--model", "nope"])
    assert bad.exit_code == 1
    assert "clipseek models" in bad.output
    for name in CLASSIC_MODELS:  # each accepted name is in the table or named by the error
        assert name in result.output or name in bad.output


@pytest.mark.parametrize(
    ("query", "message"),
    [("a +", "ends with '+'"), ("a -", "ends with '-'"), ("0:red", "weight 0")],
)
def test_query_grammar_says_what_is_wrong(query: str, message: str) -> None:
    from clipseek.errors import QueryError
    from clipseek.search.query import parse_query

    with pytest.raises(QueryError, match=re.escape(message)):
        parse_query([query])


def test_in_a_folder_with_nothing_indexed_says_so(runner, cli_env, photos, tmp_path) -> None:
    assert runner.invoke(app, ["index", str(photos / "sub")]).exit_code == 0
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    result = runner.invoke(app, ["query", "x", "--in", str(empty)])
    assert result.exit_code == 1
    assert "nothing inside this folder is indexed" in result.output
    assert "clipseek index" in result.output
