"""``clipseek index`` over an unchanged tree is answered before Typer is imported; every
other index command line, and every changed tree, goes to the full command line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clipseek.cli import entry
from clipseek.cli.quick import parse
from tests.support import REPO_ROOT
from tests.support.pictures import make_photo
from tests.support.probes import run_python


@pytest.fixture
def indexed(loaded_tiny_model, tiny_model: str, photos: Path, tmp_path: Path) -> dict[str, str]:
    """The photos indexed, and the environment of a fresh ``clipseek`` process for them."""
    from clipseek.config import load_settings
    from clipseek.engine import Engine

    db = tmp_path / "db"
    settings = load_settings({"model": tiny_model, "db": db})
    assert Engine(settings, model_loader=lambda *_: loaded_tiny_model).index([photos]).new == 12
    return {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "CLIPSEEK_DB": str(db),
        "CLIPSEEK_MODEL": tiny_model,
    }


_ENTRY = """
import sys
from clipseek.{module} import main
sys.argv = ["clipseek", *sys.argv[1:]]
main()
"""


def _run(module: str, args: list[str], env: dict[str, str]) -> tuple[int, str, str, frozenset]:
    """``clipseek ARGS`` through ``clipseek.<module>.main`` in a fresh process: exit
    status, stdout, stderr, and the top-level modules imported."""
    ran = run_python(_ENTRY.format(module=module), *args, base_env=env)
    return ran.returncode, ran.stdout, ran.stderr, ran.modules


def _timeless(text: str) -> str:
    return re.sub(r"in \d+\.\d s", "in N s", text)


@pytest.mark.slow  # fresh interpreters
def test_an_unchanged_tree_is_answered_without_typer_in_the_command_lines_words(
    indexed: dict[str, str], photos: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    make_photo(outside / "far.png", seed=50)
    (photos / "link").symlink_to(outside)
    args = ["index", str(photos)]
    code, _, first_err, _ = _run("cli.app", args, indexed)  # records the link's target
    assert code == 0, first_err
    quick = _run("cli.entry", args, indexed)
    full = _run("cli.app", args, indexed)
    assert quick[0] == full[0] == 0, quick[2] + full[2]
    assert "13 unchanged" in quick[1] and "link(s) lead outside" in quick[2]
    assert _timeless(quick[1]) == _timeless(full[1])
    assert _timeless(quick[2]) == _timeless(full[2])
    assert not quick[3] & {"typer", "click", "rich", "chromadb", "numpy", "torch"}
    assert {"typer", "rich"} <= full[3]


def test_what_it_does_not_know_is_left_to_the_command_line() -> None:
    folders, given = parse(
        ["a", "-x", "*.tmp", "--exclude=*.bak", "--db=/d", "-m", "RN50", "--include-hidden", "b"]
    )
    assert folders == ["a", "b"]
    assert given == {
        "exclude": ["*.tmp", "*.bak"],
        "db": "/d",
        "model": "RN50",
        "include_hidden": True,
    }
    assert parse(["a", "--workers", "2", "-b", "8", "--max-megapixels", "50"]) == (
        ["a"],
        {"exclude": [], "workers": 2, "batch_size": 8, "max_megapixels": 50.0},
    )
    for args in (
        [],
        ["--help"],
        ["a", "--frobnicate"],
        ["a", "-x*.tmp"],
        ["a", "-m=RN50"],
        ["a", "--workers", "0"],
        ["a", "--threads", "none"],
        ["a", "--batch-size", "many"],
        ["a", "--backend", "gpu"],
        ["a", "--db"],
        ["a", "--rebuild=yes"],
    ):
        assert parse(args) is None, args


@pytest.mark.slow  # fresh interpreters
def test_a_value_the_command_line_refuses_is_refused_as_before(
    indexed: dict[str, str], photos: Path
) -> None:
    code, _, err, _ = _run("cli.entry", ["index", str(photos), "--workers", "0"], indexed)
    assert code == 1 and "--workers 0: " in err and "Traceback" not in err
    code, _, err, _ = _run("cli.entry", ["index", str(photos), "--batch-size", "0"], indexed)
    assert code == 1 and "batch" in err.lower() and "Traceback" not in err


def test_a_changed_tree_is_compared_once_then_indexed(
    indexed: dict[str, str], photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clipseek.indexing import unchanged as quickcheck

    for name in ("CLIPSEEK_DB", "CLIPSEEK_MODEL"):
        monkeypatch.setenv(name, indexed[name])
    from clipseek.indexing.pipeline import Indexer

    calls: list[Any] = []
    real = quickcheck.tree_delta

    def counted(*args: Any, **kwargs: Any) -> Any:
        delta = real(*args, **kwargs)
        calls.append(delta)
        return delta

    scans: list[object] = []
    real_scan = Indexer._scan

    def scan(self: Indexer, *args: Any, **kwargs: Any) -> Any:
        scans.append(args)
        return real_scan(self, *args, **kwargs)

    monkeypatch.setattr(quickcheck, "tree_delta", counted)
    monkeypatch.setattr(Indexer, "_scan", scan)
    monkeypatch.setattr(entry, "leave_quickly", lambda: None)  # not this process's exit
    monkeypatch.setattr(sys, "argv", ["clipseek", "index", str(photos)])
    make_photo(photos / "new.png", seed=77)
    with pytest.raises(SystemExit) as done:
        entry.main()
    assert done.value.code in (0, None)
    # Compared once, before Typer: the command line's run planned from that comparison and
    # neither compared nor scanned again.
    assert len(calls) == 1 and [f.path for f in calls[0].differing] == [str(photos / "new.png")]
    assert scans == []
    calls.clear()
    entry.main()  # nothing changed now: answered before Typer, and only there
    assert len(calls) == 1 and calls[0] is not None and calls[0].nothing_to_do
    assert calls[0].unchanged == 13


@pytest.mark.slow  # a lock holder and fresh interpreters
def test_a_busy_index_is_left_to_the_command_line(
    indexed: dict[str, str], photos: Path, tmp_path: Path
) -> None:
    """Another run holding the index: the command line waits for it or, with --no-wait,
    names it, as it always did."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\nfrom clipseek.store.lock import WriterLock\n"
            "WriterLock(sys.argv[1]).acquire()\nprint('locked', flush=True)\nsys.stdin.read()",
            indexed["CLIPSEEK_DB"],
        ],
        env=indexed,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        code, _, err, _ = _run("cli.entry", ["index", "--no-wait", str(photos)], indexed)
        assert code == 1 and f"process {holder.pid}" in err and "--no-wait" in err
    finally:
        holder.kill()
        holder.wait()
    code, out, _, _ = _run("cli.entry", ["index", "--no-wait", str(photos)], indexed)
    assert code == 0 and "12 unchanged" in out


@pytest.mark.slow  # a clipseek process
def test_in_a_terminal_it_prints_as_the_command_line_does(
    indexed: dict[str, str], photos: Path
) -> None:
    """With a terminal the lines are drawn by rich, as the command line draws them (the
    model's name in bold)."""
    import pty
    import select

    env = {**indexed, "TERM": "xterm-256color", "COLUMNS": "200"}
    env.pop("NO_COLOR", None)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "clipseek", "index", str(photos)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(leader, 4096)
        except OSError:  # the other end closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait(timeout=60) == 0
    text = b"".join(chunks).decode()
    assert f"Indexing with \x1b[1m{indexed['CLIPSEEK_MODEL']}\x1b[0m" in text
    assert "12 unchanged" in text and "Traceback" not in text


@pytest.mark.slow  # a clipseek process
def test_output_nobody_reads_ends_the_run_once(indexed: dict[str, str], photos: Path) -> None:
    """A pipe closed by its reader (``clipseek index DIR | head -0``) loses the output, not
    the run: the quick answer is not followed by a second run through the command line."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to stdout now fails with a broken pipe
    try:
        out = subprocess.run(
            [sys.executable, "-m", "clipseek", "index", str(photos)],
            env=indexed,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
    finally:
        os.close(write_end)
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("Indexing with") == 1 and "Traceback" not in out.stderr
