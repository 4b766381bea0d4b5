"""Fixtures for `clipseek serve` and the Chroma server mode: real servers on loopback ports.

One small index (tiny model, a dozen generated pictures) is built once per session and
served by a real uvicorn server in a background thread; the API tests and the browser
test share it. Every server binds 127.0.0.1 on a port the OS picks.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_support import (
    PHOTOS,
    Served,
    counting_loader,
    draw_photo,
    make_settings,
    running_server,
)


@pytest.fixture(scope="session")
def served_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("served") / "photos"
    for name, (size, seed) in PHOTOS.items():
        draw_photo(root / name, size, seed)
    return root


@pytest.fixture(scope="session")
def served(
    served_photos: Path, tiny_model_dir: Path, loaded_tiny_model, tmp_path_factory
) -> Iterator[Served]:
    """The session's server: the photos indexed with the tiny model, small body limits."""
    from clipseek.engine import Engine
    from clipseek.server.app import ServerOptions

    db = tmp_path_factory.mktemp("served-db")
    loads: list[str] = []
    settings = make_settings(tiny_model_dir, db, max_megapixels=1.0)
    engine = Engine(settings, model_loader=counting_loader(loaded_tiny_model, loads))
    summary = engine.index([str(served_photos)])
    assert summary.new == len(PHOTOS), summary
    options = ServerOptions(max_upload_bytes=256 * 1024, max_json_bytes=8 * 1024)
    with running_server(engine, options) as url:
        yield Served(url=url, engine=engine, photos=served_photos, loads=loads)
