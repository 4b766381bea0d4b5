"""Rules of the test suite itself: no test module imports another test module or a
conftest (shared helpers live in tests/support, fixtures in conftest.py files)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _imported_modules(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
            if node.module == "tests":  # from tests import test_tui
                names.extend(f"tests.{alias.name}" for alias in node.names)
    return names


def _is_test_module(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return last.startswith("test_") or last == "conftest"


def test_no_test_module_imports_another_or_a_conftest() -> None:
    files = sorted(TESTS.rglob("*.py"))
    assert len(files) > 20  # the walk found the suite
    offenders = {
        str(path.relative_to(TESTS)): bad
        for path in files
        if (bad := [n for n in _imported_modules(path) if _is_test_module(n)])
    }
    assert offenders == {}


def test_the_rule_sees_each_way_of_importing_a_test_module(tmp_path: Path) -> None:
    source = tmp_path / "sample.py"
    source.write_text(
        "from tests.test_tui import make_app\nfrom tests import test_tui\n"
        "import tests.conftest\nfrom test_browser import browser\nfrom tests.support import app\n"
    )
    found = [n for n in _imported_modules(source) if _is_test_module(n)]
    assert found == ["tests.test_tui", "tests.test_tui", "tests.conftest", "test_browser"]
