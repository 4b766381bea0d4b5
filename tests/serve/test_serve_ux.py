"""`clipseek serve` as a person runs it: an empty index, and Ctrl-C (issue 13)."""

from __future__ import annotations

import signal
import subprocess

import pytest

from tests.support.engines import counting_loader, settings_for
from tests.support.servers import free_port, serve_env, start_serve

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

pytestmark = pytest.mark.slow  # `clipseek serve` processes


def test_ctrl_c_says_it_is_stopping_and_stops(
    tmp_path, tiny_model, tiny_model_dir, loaded_tiny_model, served_photos, fast_path
):
    db = tmp_path / "db"
    from clipseek.engine import Engine

    settings = settings_for(tiny_model_dir, db)
    Engine(settings, model_loader=counting_loader(loaded_tiny_model, [])).index(
        [str(served_photos / "trips")]
    )
    port = free_port()
    proc = start_serve(serve_env(db, tiny_model), port)
    # a browser's keep-alive connection, and a search already answered
    with httpx.Client(trust_env=False, timeout=60) as client:
        client.post(f"http://127.0.0.1:{port}/search", json={"query": "a trip", "top_k": 2})
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    # The request just answered may still be winding down on a busy machine: then the
    # server says it lets it finish, which is also right.
    assert lines[-1] == "Stopped.", err
    assert lines[-2] == "Stopping…" or lines[-2].startswith("Stopping: letting 1 request"), err
    assert "Traceback" not in err


def test_an_empty_index_says_how_to_fill_it(tmp_path, tiny_model, fast_path):
    port = free_port()
    proc = start_serve(serve_env(tmp_path / "empty", tiny_model), port)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert "(0 images)" in err
    assert "run clipseek index FOLDER" in err.replace("\n", " ")
