"""The gallery (grid) view of the app: layout, keys, mouse, re-flow, fallback, thumbnails.

It runs the app headless with Pilot against the same small indexed library as
tests/test_tui.py (its fixtures are imported here), with the half-cell renderer.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.test_tui import (  # noqa: F401 - fixtures used by name
    _fixed_cells,
    _no_blink,
    at_home,
    library,
    make_app,
    pilot_test,
    search,
    wait_for,
)

pytest.importorskip("textual")


def grid_of(app):
    from clipseek.tui.widgets.gallery import GalleryGrid

    return app.search_screen.query_one(GalleryGrid)


def grid_settings(settings, **extra):
    from dataclasses import replace

    return replace(settings, view="grid", **extra)


async def grid_search(pilot, text: str = "a picture", top_k: int | None = None):
    app = pilot.app
    await wait_for(pilot, lambda: app.model_ready)
    if top_k is not None:
        box = app.search_screen.query_one("#top-k")
        box.value = str(top_k)
        box.commit()
        await pilot.pause()
    await search(pilot, text)
    grid = grid_of(app)
    await wait_for(pilot, lambda: grid.complete)
    await pilot.pause()
    return grid


@pilot_test
async def test_grid_shows_every_result_in_columns_and_keys_move_the_selection(
    at_home, loaded_tiny_model
):
    from clipseek.tui.widgets.preview import PreviewPane

    app = make_app(grid_settings(at_home), loaded_tiny_model)
    async with app.run_test(size=(120, 40)) as pilot:
        grid = await grid_search(pilot, top_k=12)
        screen = app.search_screen
        assert screen.grid_active and grid.display
        assert not screen.query_one("#results").display
        assert app.focused is grid
        # 120 columns less the 36-column details pane: four 20-column cells.
        assert (grid.columns, grid.rows) == (3, 3) or grid.columns >= 3
        expected = app.engine.search("a picture", 12).results
        assert [r.path for r in grid.results] == [r.path for r in expected]
        shown = [c for c in grid.cells if c.result is not None]
        assert all(c.showing_image for c in shown)
        assert [c.result.rank for c in shown] == list(range(1, len(shown) + 1))

        pane = screen.query_one(PreviewPane)
        assert pane.result is expected[0] or pane.result.path == expected[0].path
        assert screen.selected.path == expected[0].path

        await pilot.press("right")
        assert grid.index == 1 and screen.selected.path == expected[1].path
        assert pane.result.path == expected[1].path
        await pilot.press("down")
        assert grid.index == 1 + grid.columns
        await pilot.press("left")
        assert grid.index == grid.columns
        await pilot.press("up")
        assert grid.index == 0
        await pilot.press("up")  # already on the top row: stays
        assert grid.index == 0
        await pilot.press("end")
        assert grid.index == 11
        selected = [c for c in grid.cells if c.has_class("-selected")]
        assert len(selected) == 1 and selected[0].result.path == expected[11].path
        await pilot.press("home")
        assert grid.index == 0 and grid.top_row == 0
