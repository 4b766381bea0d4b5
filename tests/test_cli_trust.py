"""What a hands-on and an adversarial trial of the command line found (issue 25, items
6, 7, 8, 11, 18-21): each test failed before its fix."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clipseek.cli.app import app
from tests.conftest import make_photo
from tests.test_hostile_input import assert_one_clear_line

# --------------------------------------------------------------------------- 18


def test_a_mistyped_folder_does_not_mark_the_index_interrupted(
    runner: CliRunner, cli_env: Path, photos: Path, tmp_path: Path
) -> None:
    from clipseek.store.repair import RUN_MARKER

    assert runner.invoke(app, ["index", str(photos)]).exit_code == 0
    typo = runner.invoke(app, ["index", str(tmp_path / "nonexistent")])
    assert_one_clear_line(typo, "does not exist", "nothing was indexed")
    assert not (cli_env / RUN_MARKER).exists()
    again = runner.invoke(app, ["index", str(photos)])
    assert again.exit_code == 0, again.output
    assert "interrupted" not in again.output
    assert "12 unchanged" in again.stdout
