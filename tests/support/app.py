"""Driving the Textual app headless with Pilot against a real engine on the tiny model.

Wait for the app with :func:`tests.support.waiting.wait_until_async`; the fixtures that
index the app's library and point HOME at it (``library``, ``at_home``, ``fixed_cells``)
are in tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import functools
import io
import os
from collections.abc import Callable
from pathlib import Path

from tests.support.engines import engine_with
from tests.support.pictures import make_photo
from tests.support.waiting import wait_until_async

FIXED_MTIME = 1_700_000_000  # 2023-11-14, so the preview shows the same date everywhere

#: The app's library under ~/Pictures: folders two deep, a long name.
APP_LIBRARY = [
    "beach.bmp",
    "city.bmp",
    "forest.bmp",
    "cat.bmp",
    "dog.bmp",
    "sunset.bmp",
    "holiday/day-1/boat.bmp",
    "holiday/day-1/harbour.bmp",
    "holiday/day-2/mountain.bmp",
    "holiday/day-2/a rather long file name from a camera.bmp",
    "scans/receipt.bmp",
    "scans/letter.bmp",
]


def pilot_test(func: Callable) -> Callable:
    """Run an async test with asyncio.run (no async plugin needed)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return asyncio.run(func(*args, **kwargs))

    return wrapper


def make_pictures(root: Path, names: list[str], size: tuple[int, int] = (96, 64)) -> list[Path]:
    """Photos under ``root`` with the fixed date, so the preview's text never varies."""
    paths = []
    for i, name in enumerate(names):
        path = make_photo(root / name, size=(size[0] + 8 * (i % 4), size[1]), seed=i)
        os.utime(path, (FIXED_MTIME, FIXED_MTIME))
        paths.append(path)
    return paths


def make_app(settings, model, **kwargs):
    """The app on ``settings`` with ``model`` already loaded, the half-cell preview and a
    fixed clock."""
    from clipseek.tui.app import ClipseekApp

    kwargs.setdefault("preview", "halfcell")
    kwargs.setdefault("clock", lambda: 1000.0)
    return ClipseekApp(engine=engine_with(settings, model), **kwargs)


def busy(app, group: str) -> bool:
    """Whether a worker of ``group`` (``"search"``, ...) is still running."""
    return any(w.group == group and not w.is_finished for w in app.workers)


async def search(pilot, text: str) -> None:
    """Type ``text`` in the query box, press Enter, wait for the answer."""
    screen = pilot.app.search_screen
    query = screen.query_one("#query")
    query.focus()
    query.value = text
    token = screen._token
    await pilot.press("enter")
    await wait_until_async(lambda: screen._token > token and not busy(pilot.app, "search"))
    await pilot.pause()


def send_key(app, key: str) -> None:
    """Deliver a key press without waiting for the app to settle afterwards."""
    from textual import events

    app.post_message(events.Key(key, None))


def text_of(widget) -> str:
    """The plain text a Static shows (markup strings and Rich renderables alike)."""
    content = widget.content
    if isinstance(content, str):
        return str(widget.render())
    from rich.console import Console

    console = Console(width=200, file=io.StringIO(), record=True)
    console.print(content)
    return console.export_text()


def rows(app) -> list:
    """The results the list shows (none while it is hidden)."""
    from clipseek.tui.widgets.results import ResultsList

    results = app.search_screen.query_one("#results", ResultsList)
    return list(results.results) if results.display else []


def no_blink(pilot) -> None:
    """Stop the text cursors blinking, so a snapshot does not depend on when it is taken."""
    from textual.widgets import Input

    for widget in pilot.app.screen.query(Input):
        widget.cursor_blink = False


def grid_of(app):
    from clipseek.tui.widgets.gallery import GalleryGrid

    return app.search_screen.query_one(GalleryGrid)


async def grid_search(pilot, text: str = "a picture", top_k: int | None = None):
    app = pilot.app
    await wait_until_async(lambda: app.model_ready)
    if top_k is not None:
        box = app.search_screen.query_one("#top-k")
        box.value = str(top_k)
        box.commit()
        await pilot.pause()
    await search(pilot, text)
    grid = grid_of(app)
    await wait_until_async(lambda: grid.complete)
    await pilot.pause()
    return grid


def exif_library_app(tmp_path: Path, folder: Path):
    """The app on ``folder`` indexed with the shipped shapes model (a library of photos
    with EXIF dates and cameras)."""
    from clipseek.config import load_settings
    from clipseek.engine import Engine
    from clipseek.testing import fixture_model_spec
    from clipseek.tui.app import ClipseekApp

    settings = load_settings(
        {"model": fixture_model_spec(), "db": tmp_path / "db", "device": "cpu", "precision": "fp32"}
    )
    Engine(settings).index([folder])
    return ClipseekApp(engine=Engine(settings), preview="halfcell", clock=lambda: 1000.0)


def names_shown(app) -> set[str]:
    return {Path(r.path).name for r in rows(app)}
