"""The `clipseek serve` command: start-up, its one-line errors, and a real process."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from clipseek.cli.app import app
from tests.support.engines import counting_loader, settings_for
from tests.support.servers import free_port, serve_env, start_serve


def _run(*args: str):
    return CliRunner().invoke(app, ["serve", *args])


def test_missing_extra_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if fastapi were not installed
    result = _run("--port", "0")
    assert result.exit_code == 1
    assert "fastapi" in result.output
    assert "pip install 'clipseek[serve]'" in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.slow  # listens on a port
def test_a_taken_port_is_one_line_before_any_model_load(tmp_path):
    pytest.importorskip("fastapi")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        # a model that does not exist: the port must be checked first, so this never loads
        result = _run("--port", str(port), "--model", f"local-dir:{tmp_path / 'none'}")
    assert result.exit_code == 1
    assert f"Port {port} on 127.0.0.1 is already in use; choose another with --port." in (
        result.output
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--port", "70000"), "--port must be from 1 to 65535"),
        (("--port", "-1"), "--port must be from 1 to 65535"),
        (("--host", "192.0.2.1"), "Cannot listen on 192.0.2.1:"),  # an address not on this machine
    ],
)
def test_bad_addresses_are_one_line(args, expected):
    pytest.importorskip("fastapi")
    result = _run(*args)
    assert result.exit_code == 1
    assert expected in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("10.0.0.5", False),
    ],
)
def test_loopback_detection(host, loopback):
    from clipseek.server import is_loopback

    assert is_loopback(host) is loopback


@pytest.mark.slow  # a `clipseek serve` process
def test_clipseek_serve_runs_as_a_real_process(
    tmp_path, tiny_model, tiny_model_dir, loaded_tiny_model, served_photos, fast_path
):
    """The command end to end in its own process: serve an index, answer, stop on Ctrl-C."""
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    db = tmp_path / "db"
    from clipseek.engine import Engine

    settings = settings_for(tiny_model_dir, db)
    Engine(settings, model_loader=counting_loader(loaded_tiny_model, [])).index(
        [str(served_photos / "trips")]
    )
    port = free_port()
    proc = start_serve(serve_env(db, tiny_model), port)
    try:
        health = httpx.get(f"http://127.0.0.1:{port}/", trust_env=False, timeout=5).json()
        assert health["indexed_images"] == 3
        assert health["index"] == str(db)
        r = httpx.post(
            f"http://127.0.0.1:{port}/search",
            json={"query": "a trip", "top_k": 2},
            trust_env=False,
            timeout=60,
        )
        assert r.status_code == 200 and r.json()["total_results"] == 2
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode in (0, 130), err
    assert f"Serving on http://127.0.0.1:{port}" in err
    assert "(3 images)" in err
    assert "Traceback" not in err
