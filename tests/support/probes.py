"""Fresh-interpreter probes: run code in a new Python process and see what it imported.

Start-up cost is the point of several tests (a cold query must not import torch, the
help must not import chromadb), and only a fresh interpreter shows it: the test process
has imported everything already.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from tests.support import REPO_ROOT

_MARK = "CLIPSEEK-PROBE-MODULES="

# Registered before the code runs, so it reports last, after the code's own exit handlers;
# on stderr, so the code's stdout is exactly its own.
_PRELUDE = (
    "import atexit as _probe_atexit, sys as _probe_sys\n"
    "_probe_atexit.register(lambda: _probe_sys.stderr.write("
    f"'\\n{_MARK}' + repr(sorted({{m.split('.')[0] for m in _probe_sys.modules}})) + '\\n'))\n"
)


@dataclass(frozen=True)
class Ran:
    """What a probe's process did."""

    returncode: int
    stdout: str
    stderr: str  # without the module list
    listed: frozenset[str] | None  # None: the process left before it could list them

    @property
    def modules(self) -> frozenset[str]:
        """The top-level names of the modules left imported at exit. Never empty by
        accident: a process that could not report them fails the test here."""
        assert self.listed is not None, f"the process did not list its modules:\n{self.output}"
        return self.listed

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_python(
    code: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    base_env: Mapping[str, str] | None = None,
    timeout: float = 300,
    stdin: int | None = None,
) -> Ran:
    """Run ``code`` with ``python -c`` and ``args`` as its ``sys.argv[1:]``, this checkout
    on its path. The environment is ``base_env`` (default: this process's) updated with
    ``env``."""
    full_env = {**(os.environ if base_env is None else base_env), **(env or {})}
    full_env["PYTHONPATH"] = str(REPO_ROOT)
    out = subprocess.run(
        [sys.executable, "-c", _PRELUDE + code, *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=stdin,
    )
    before, mark, after = out.stderr.rpartition("\n" + _MARK)
    if not mark:
        return Ran(out.returncode, out.stdout, out.stderr, None)
    listed, _, later = after.partition("\n")  # the interpreter may still write as it ends
    return Ran(out.returncode, out.stdout, before + later, frozenset(ast.literal_eval(listed)))


def cli_code(args: list[str]) -> str:
    """Code for :func:`run_python` that runs ``clipseek ARGS`` through the Typer app and
    fails on a non-zero exit."""
    return (
        "import sys\n"
        "from clipseek.cli.app import app\n"
        f"sys.argv = ['clipseek', *{args!r}]\n"
        "try:\n    app(prog_name='clipseek')\nexcept SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
    )


def assert_one_clear_line(result, *needles: str) -> None:
    """A Typer result that failed with exit 1 in one sentence holding ``needles``, no
    traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "unexpected problem" not in result.output
    for needle in needles:
        assert needle in result.stderr, result.stderr
