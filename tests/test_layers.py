"""The layers of the code hold: import-linter's contracts in pyproject.toml, run as a test.

The contracts say which package may import which (front ends over the engine over the
trades over the basics, no circle outside tui/). The checks that break them are real:
each plants one bad import in a copy of the package and the same contracts must catch it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = "front ends over the engine over the trades over the basics"
CIRCLES = "no import circle outside the app (whose screens name it for type checking)"


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    """import-linter over the ``clipseek`` package under ``root``, with its pyproject.toml."""
    lint = shutil.which("lint-imports", path=os.path.dirname(sys.executable)) or shutil.which(
        "lint-imports"
    )
    if lint is None:
        pytest.fail("import-linter is not installed: pip install -e '.[test]'")
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [lint, str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_package_keeps_its_layers() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout, result.stdout


@pytest.mark.parametrize(
    ("module", "bad_import", "contract", "broken"),
    [
        # upwards: the store would know the engine
        (
            "store/keys.py",
            "from clipseek.engine import Engine",
            LAYERS,
            "clipseek.store.keys -> clipseek.engine",
        ),
        # upwards from the bottom: errors would know the command line
        (
            "errors.py",
            "import clipseek.cli.report",
            LAYERS,
            "clipseek.errors -> clipseek.cli.report",
        ),
        # sideways between independent front ends
        (
            "server/thumbs.py",
            "from clipseek.tui import run_tui",
            LAYERS,
            "clipseek.server.thumbs -> clipseek.tui",
        ),
        # sideways between independent trades
        (
            "search/filters.py",
            "from clipseek.indexing import events",
            LAYERS,
            "clipseek.search.filters -> clipseek.indexing",
        ),
        # a circle inside one package: chroma imports records
        ("store/records.py", "from clipseek.store import chroma", CIRCLES, ".records -> .chroma"),
    ],
)
def test_a_planted_bad_import_breaks_a_contract(
    tmp_path: Path, module: str, bad_import: str, contract: str, broken: str
) -> None:
    """The contract named breaks, naming the import (an upward import also closes a circle
    between the top packages, so it breaks the other contract as well)."""
    shutil.copytree(
        ROOT / "clipseek", tmp_path / "clipseek", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "clipseek" / module
    target.write_text(target.read_text() + f"\n{bad_import}  # planted by the test\n")

    result = _lint(tmp_path)
    assert result.returncode != 0, result.stdout + result.stderr
    assert f"{contract} BROKEN" in result.stdout, result.stdout
    # the broken contract's own section of the report, up to the other contract's
    report = result.stdout.split("Broken contracts", 1)[1]
    other = CIRCLES if contract == LAYERS else LAYERS
    section = report.split(contract, 1)[1].split(other, 1)[0]
    assert broken in section, result.stdout
