"""File names never drive the terminal (issue 25, item 1).

A name may hold escape sequences (colour, window title, clear screen), BEL, newlines,
C1 controls and bidi overrides. Wherever a name reaches a terminal it is shown under the
one rule in clipseek/photos/pathtext.py: every such character escaped visibly, the
backslash itself escaped, so a literal ``\\xff`` never looks like the byte 0xFF. JSON
keeps the exact path.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.support.pictures import make_photo

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="POSIX file names")

HOSTILE = "a\x1b[31mRED\x1b]0;TITLE\x07\x1b[2Jb.jpg"
NEWLINE = "new\nline.jpg"
BROKEN = "bad\x1b[2J\nname.jpg"  # not an image: reaches the skipped-file line
MARKUP = "[red]markup[blink].jpg"


def test_display_rule_escapes_controls_and_the_escape_itself() -> None:
    from clipseek.photos.pathtext import display_path, display_text, unescape_display

    assert display_path(HOSTILE) == "a\\x1b[31mRED\\x1b]0;TITLE\\x07\\x1b[2Jb.jpg"
    assert display_path(NEWLINE) == "new\\x0aline.jpg"
    assert display_path("tab\there\x7f") == "tab\\x09here\\x7f"
    # C1 controls and bidi overrides are characters, not bytes: their own escape
    assert display_path("c1\x9b31m") == "c1\\u009b31m"
    assert display_path("evil\u202egpj.exe") == "evil\\u202egpj.exe"
    # a literal backslash-x-f-f and the byte 0xFF never look alike
    literal = "/p/lit\\xff.jpg"
    byte = os.fsdecode(b"/p/lit\xff.jpg")
    assert display_path(literal) != display_path(byte)
    assert display_path(literal) == "/p/lit\\\\xff.jpg"
    assert display_path(byte) == "/p/lit\\xff.jpg"
    for name in (HOSTILE, NEWLINE, literal, byte, "c1\x9b", "evil\u202e", "a\\\\b", "end\\"):
        shown = display_path(name)
        assert shown.isprintable(), shown
        assert unescape_display(shown) in (None, name), (name, shown)
        if shown != name:
            assert unescape_display(shown) == name
    # messages: the same escapes, and a path already shown is not escaped twice
    assert display_text(f"cannot read {HOSTILE}") == f"cannot read {display_path(HOSTILE)}"
    message = f"--in {display_path(byte)}: no such folder."
    assert display_text(message) == message
    assert display_text("line\nbreak\u202e").isprintable()


def test_shell_path_quotes_controls() -> None:
    import subprocess

    from clipseek.photos.pathtext import shell_path

    for name in (HOSTILE, NEWLINE, "c1\x9b.jpg", "bidi\u202e.jpg"):
        clip = shell_path(name)
        assert clip.isprintable() and clip.startswith("$'"), clip
        echoed = subprocess.run(
            ["bash", "-c", f"printf %s {clip}"], capture_output=True, check=True
        ).stdout
        assert echoed == name.encode("utf-8")


@pytest.fixture
def hostile_library(tmp_path: Path) -> Path:
    root = tmp_path / "lib"
    for i, name in enumerate([HOSTILE, NEWLINE, MARKUP, "plain.jpg"]):
        make_photo(root / name, seed=i, fmt="JPEG")
    (root / BROKEN).write_bytes(b"not an image at all")
    return root


def _name_bytes_absent(output: bytes, *, terminal: bool) -> None:
    """No byte sequence of a name's controls reaches the output."""
    assert b"\x07" not in output
    assert b"\x1b]0;TITLE" not in output
    assert b"\x1b[2J" not in output
    assert b"\x1b[31mRED" not in output
    assert b"new\nline" not in output and b"bad\x1b" not in output
    if not terminal:
        assert b"\x1b" not in output


@pytest.mark.parametrize("terminal", [False, True], ids=["piped", "terminal"])
def test_index_and_query_show_hostile_names_escaped(
    runner, cli_env, hostile_library: Path, monkeypatch, terminal: bool
) -> None:
    from clipseek.cli.app import app

    monkeypatch.setenv("COLUMNS", "400")
    if terminal:  # rich draws as on a terminal: colours, the live bar, links
        monkeypatch.setenv("FORCE_COLOR", "1")
    indexed = runner.invoke(app, ["index", str(hostile_library)])
    assert indexed.exit_code == 0, indexed.output
    out = indexed.stdout_bytes + indexed.stderr_bytes
    _name_bytes_absent(out, terminal=terminal)
    assert b"bad\\x1b[2J\\x0aname.jpg" in indexed.stderr_bytes  # the skipped-file line

    table = runner.invoke(app, ["query", "a photo", "-k", "10"])
    assert table.exit_code == 0, table.output
    out = table.stdout_bytes + table.stderr_bytes
    _name_bytes_absent(out, terminal=terminal)
    assert b"a\\x1b[31mRED\\x1b]0;TITLE\\x07\\x1b[2Jb.jpg" in table.stdout_bytes
    assert b"new\\x0aline.jpg" in table.stdout_bytes
    assert b"[red]markup[blink].jpg" in table.stdout_bytes  # shown, not interpreted

    # --save's message and --in's errors quote names the same way
    saved_dir = hostile_library / "out\x1b[2J"
    saved = runner.invoke(app, ["query", "a photo", "--save", str(saved_dir / "s.png")])
    assert saved.exit_code == 0, saved.output
    _name_bytes_absent(saved.stdout_bytes + saved.stderr_bytes, terminal=terminal)
    assert b"out\\x1b[2J" in saved.stderr_bytes
    missing = runner.invoke(app, ["query", "a photo", "--in", str(hostile_library / BROKEN)])
    _name_bytes_absent(missing.stdout_bytes + missing.stderr_bytes, terminal=terminal)

    # JSON keeps the exact names, for scripts
    as_json = runner.invoke(app, ["query", "a photo", "-k", "10", "--json"])
    paths = {os.path.basename(r["path"]) for r in json.loads(as_json.stdout)["results"]}
    assert {HOSTILE, NEWLINE, MARKUP} <= paths


def test_duplicates_and_info_show_hostile_names_escaped(
    runner, cli_env, tmp_path: Path, monkeypatch
) -> None:
    from clipseek.cli.app import app

    monkeypatch.setenv("COLUMNS", "400")
    root = tmp_path / "lib\x1b]0;T\x07"
    make_photo(root / HOSTILE, seed=1, fmt="JPEG")
    make_photo(root / NEWLINE, seed=1, fmt="JPEG")  # the same picture: one group
    assert runner.invoke(app, ["index", str(root)]).exit_code == 0
    dups = runner.invoke(app, ["duplicates"])
    assert dups.exit_code == 0, dups.output
    _name_bytes_absent(dups.stdout_bytes + dups.stderr_bytes, terminal=False)
    assert b"new\\x0aline.jpg" in dups.stdout_bytes
    info = runner.invoke(app, ["info"])
    assert info.exit_code == 0, info.output
    assert b"\x1b" not in info.stdout_bytes and b"\x07" not in info.stdout_bytes
    assert b"lib\\x1b]0;T\\x07" in info.stdout_bytes


def test_the_quick_unchanged_answer_shows_hostile_names_escaped(
    runner, cli_env, hostile_library: Path, capfd
) -> None:
    """The console script answers an unchanged tree before Typer (cli/quick.py); it names
    the unreadable file and the links there, under the same rule."""
    from clipseek.cli.app import app
    from clipseek.cli.quick import index_if_unchanged

    (hostile_library / "link\x1b]0;L\x07").symlink_to(hostile_library.parent)
    assert runner.invoke(app, ["index", str(hostile_library)]).exit_code == 0
    capfd.readouterr()
    assert index_if_unchanged([str(hostile_library)]) is True
    out, err = capfd.readouterr()
    both = (out + err).encode("utf-8", "surrogateescape")
    _name_bytes_absent(both, terminal=False)
    assert b"\x1b]0;L" not in both
    assert b"bad\\x1b[2J\\x0aname.jpg" in both  # the skipped-file line
    assert b"link\\x1b]0;L\\x07" in both  # the links note


def test_duplicates_json_keeps_names_that_are_not_utf8_exact(runner, cli_env, tmp_path) -> None:
    from clipseek.cli.app import app

    root = tmp_path / "lib"
    odd = os.fsdecode(os.path.join(os.fsencode(root), b"latin1_\xe9.jpg"))
    make_photo(Path(odd), seed=2, fmt="JPEG")
    make_photo(root / f"copy{NEWLINE}", seed=2, fmt="JPEG")
    assert runner.invoke(app, ["index", str(root)]).exit_code == 0
    result = runner.invoke(app, ["duplicates", "--json"])
    assert result.exit_code == 0, result.output
    (group,) = json.loads(result.stdout)["groups"]
    paths = {os.fsencode(item["path"]) for item in group["items"]}
    assert os.fsencode(odd) in paths
    assert os.fsencode(str(root / f"copy{NEWLINE}")) in paths
