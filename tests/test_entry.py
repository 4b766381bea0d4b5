"""The console script: `clipseek` alone opens the app without loading the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from clipseek.cli import entry
from tests.support.probes import run_python


@pytest.mark.slow  # a fresh interpreter
def test_bare_clipseek_in_a_terminal_opens_the_app_without_typer() -> None:
    code = (
        "import sys\n"
        "sys.argv = ['clipseek']\n"
        "sys.stdin.isatty = lambda: True\n"
        "sys.stdout.isatty = lambda: True\n"
        "import clipseek.tui\n"
        "def fake_run_tui(settings, preview=None):\n"
        "    print('APP', settings.model, 'typer' in sys.modules,\n"
        "          'clipseek.cli.app' in sys.modules)\n"
        "clipseek.tui.run_tui = fake_run_tui\n"
        "from clipseek.cli.entry import main\n"
        "main()\n"
    )
    out = run_python(code)
    assert out.returncode == 0, out.stderr
    from clipseek.config import DEFAULT_MODEL

    assert out.stdout.strip() == f"APP {DEFAULT_MODEL} False False"


@pytest.mark.slow  # clipseek processes
def test_arguments_or_no_terminal_go_to_the_cli() -> None:
    version = subprocess.run(
        [sys.executable, "-m", "clipseek", "--version"], capture_output=True, text=True
    )
    assert version.returncode == 0 and version.stdout.startswith("clipseek ")
    piped = subprocess.run(
        [sys.executable, "-m", "clipseek"], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    assert piped.returncode == 0
    assert "Usage" in piped.stdout and "query" in piped.stdout


def test_bad_config_is_one_line_and_exit_1(
    isolated_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from clipseek.config import config_file_path

    path = config_file_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('device = "tpu"\n')
    assert entry.open_app() == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Unknown device 'tpu'") and err.count("\n") == 1


@pytest.mark.slow  # a fresh interpreter
def test_leaving_keeps_the_exit_code_and_finalises_what_the_command_let_go() -> None:
    """The exit skips the interpreter's last full collections (gc.freeze), but garbage
    the command has just dropped is still finalised and its exit status still stands."""
    code = (
        "import atexit, gc, sys\n"
        "import clipseek.cli.app\n"
        "class Cycle:\n"
        "    def __init__(self): self.me = self\n"
        "    def __del__(self): print('finalised', flush=True)\n"
        "def command(**_flags):\n"
        "    Cycle()\n"
        "    sys.exit(3)\n"
        "clipseek.cli.app.main = command\n"
        "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0, flush=True))\n"
        "sys.argv = ['clipseek', 'query', 'x']\n"
        "from clipseek.cli.entry import main\n"
        "main()\n"
    )
    out = run_python(code)
    assert out.returncode == 3, out.stderr
    assert out.stdout.split("\n") == ["finalised", "frozen True", ""]


@pytest.mark.slow  # a fresh interpreter
def test_the_app_starts_without_collections_and_gets_them_back_frozen() -> None:
    """The console script starts the app with the garbage collector off; the app's boot
    turns it back on with what start-up made frozen. An app started with it on is left
    as it is (the freeze count does not move)."""
    code = (
        "import gc\n"
        "from clipseek.gc_pause import start_up_over, start_without_collections\n"
        "start_up_over()\n"
        "print(gc.isenabled(), gc.get_freeze_count())\n"
        "start_without_collections()\n"
        "print(gc.isenabled())\n"
        "start_up_over()\n"
        "print(gc.isenabled(), gc.get_freeze_count() > 1000)\n"
    )
    out = run_python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n") == ["True 0", "False", "True True", ""]
