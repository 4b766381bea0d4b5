"""Servers for tests: `clipseek serve` in a thread or as a process, `chroma run`, and the
pictures the session's server serves. Every server binds 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import REPO_ROOT
from tests.support.waiting import wait_until

#: name -> (size, seed); a TIFF (browsers cannot show it) and a subfolder for the `in` filter.
PHOTOS: dict[str, tuple[tuple[int, int], int]] = {
    "beach.jpg": ((96, 64), 1),
    "city.png": ((80, 60), 2),
    "forest.jpg": ((64, 96), 3),
    "dog.webp": ((72, 72), 4),
    "scan.tif": ((90, 60), 5),
    "sunset.bmp": ((64, 48), 6),
    "trips/a.jpg": ((96, 72), 7),
    "trips/b.jpg": ((88, 66), 8),
    "trips/c.png": ((70, 70), 9),
    "with space.jpg": ((100, 50), 10),
}
SUBFOLDER = "trips"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    """A running server and what it serves."""

    url: str
    engine: object
    photos: Path
    loads: list[str] = field(default_factory=list)  # one entry per model load

    def path_of(self, name: str) -> str:
        return str(self.photos / name)


@contextmanager
def running_server(engine, options=None) -> Iterator[str]:
    """Serve ``engine`` with uvicorn on 127.0.0.1 in a thread; yields the base URL."""
    import uvicorn

    from clipseek.server import bind, url_for
    from clipseek.server.app import ServerOptions, create_app
    from clipseek.server.security import uvicorn_config

    options = options or ServerOptions()
    sock = bind("127.0.0.1", 0)
    app = create_app(engine, options)
    config = uvicorn_config(app, options.limits, log_level="warning", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()

    def started() -> bool:
        if not thread.is_alive():
            raise RuntimeError("the test server stopped before it started")
        return server.started

    try:
        wait_until(started, what="the test server to start")
        yield url_for(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def serve_env(db: Path, model: str) -> dict[str, str]:
    """The environment of a ``clipseek serve`` process on ``db`` with ``model``."""
    return {
        **os.environ,
        "CLIPSEEK_DB": str(db),
        "CLIPSEEK_MODEL": model,
        "CLIPSEEK_DEVICE": "cpu",
        "CLIPSEEK_PRECISION": "fp32",
        "PYTHONPATH": str(REPO_ROOT),
    }


def start_serve(env: dict[str, str], port: int) -> subprocess.Popen:
    """A real ``clipseek serve`` process, once it answers ``/health``."""
    import httpx

    proc = subprocess.Popen(
        [sys.executable, "-m", "clipseek", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def answers() -> bool:
        if proc.poll() is not None:
            raise AssertionError(proc.communicate()[1])
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", trust_env=False, timeout=5)
        except httpx.TransportError:
            return False
        return True

    try:
        wait_until(answers, timeout=180, interval=0.3, what="`clipseek serve` to answer")
    except BaseException:
        proc.kill()
        raise
    return proc


@dataclass
class ChromaServer:
    """A ``chroma run`` process and where it keeps its data and log."""

    url: str
    process: subprocess.Popen
    path: Path
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)


def _chroma_executable() -> str | None:
    beside = Path(sys.executable).parent / "chroma"
    return str(beside) if beside.exists() else shutil.which("chroma")


def start_chroma(data: Path, log: Path) -> ChromaServer:
    """`chroma run` on a free loopback port, once it accepts connections (skips the test
    where the `chroma` command is not installed)."""
    exe = _chroma_executable()
    if exe is None:
        pytest.skip("the `chroma` command (from the chromadb package) is not installed")
    port = free_port()
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
    with log.open("ab") as out:
        process = subprocess.Popen(
            [exe, "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    server = ChromaServer(f"http://127.0.0.1:{port}", process, data, log)

    def accepts() -> bool:
        if process.poll() is not None:
            pytest.fail(f"`chroma run` exited early:\n{log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    try:
        wait_until(accepts, interval=0.2, what="`chroma run` to accept connections")
    except AssertionError:
        server.stop()
        pytest.fail(f"`chroma run` did not start:\n{log.read_text(errors='replace')}")
    return server
