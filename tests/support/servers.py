"""Helpers for the `clipseek serve` tests: generated photos, servers on loopback ports.

A plain module (not conftest) so test files can import it by a name no other
folder uses.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def draw_photo(path: Path, size: tuple[int, int], seed: int) -> Path:
    """A small, distinct picture: coloured background with a few shapes."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    img = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    w, h = size
    for _ in range(5):
        x0, y0 = rng.randrange(w), rng.randrange(h)
        box = [x0, y0, x0 + rng.randrange(8, w), y0 + rng.randrange(8, h)]
        fill = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


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


def counting_loader(loaded_model, loads: list[str]) -> Callable:
    """A model loader that hands out the session's tiny model and records each call, so a
    test can check that the server loads its model once, however many requests come."""

    def load(spec, device, precision):
        loads.append(spec.name)
        return loaded_model

    return load


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
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield url_for(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def make_settings(tiny_model_dir: Path, db: Path, **extra):
    """Settings built directly: session fixtures run before the per-test isolated HOME,
    so they must not read any config file or environment."""
    from clipseek.config import Settings

    return Settings(
        db=db,
        model=f"local-dir:{tiny_model_dir}",
        device="cpu",
        precision="fp32",
        sources={"model": "flag"},
        **extra,
    )


def serve_env(db: Path, model: str) -> dict[str, str]:
    """The environment of a ``clipseek serve`` process on ``db`` with ``model``."""
    import os

    return {
        **os.environ,
        "CLIPSEEK_DB": str(db),
        "CLIPSEEK_MODEL": model,
        "CLIPSEEK_DEVICE": "cpu",
        "CLIPSEEK_PRECISION": "fp32",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }


def start_serve(env: dict[str, str], port: int) -> Any:
    """A real ``clipseek serve`` process, once it answers ``/health``."""
    import subprocess
    import sys

    import httpx

    proc = subprocess.Popen(
        [sys.executable, "-m", "clipseek", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", trust_env=False, timeout=5)
            return proc
        except httpx.TransportError:
            time.sleep(0.3)
    proc.kill()
    raise AssertionError(proc.communicate()[1])
