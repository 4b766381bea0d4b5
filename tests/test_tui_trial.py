"""The app as the hands-on trial of issue 25 used it: resizing, focus, the Top box,
the gallery's size and keys, the filter line's words and previews on narrow terminals.

Driven headless with Pilot against the small library of tests/test_tui.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import test_tui
from tests.test_tui import make_app, pilot_test, rows, search, wait_for

library = test_tui.library
at_home = test_tui.at_home
_fixed_cells = test_tui._fixed_cells

pytest.importorskip("textual")


def _results(paths: list[str]):
    from clipseek.search.query import SearchResult

    return [
        SearchResult(rank=i + 1, path=p, score=0.9 - i / 1000, id=str(i))
        for i, p in enumerate(paths)
    ]


def _grid(app):
    from clipseek.tui.widgets.gallery import GalleryGrid

    return app.search_screen.query_one(GalleryGrid)


# ----------------------------------------------------------------- 12: resizing the gallery


@pytest.mark.parametrize("sizes", [((120, 40), (80, 24)), ((140, 45), (100, 30))])
@pilot_test
async def test_shrinking_the_terminal_under_a_full_gallery_does_not_crash(
    at_home, loaded_tiny_model, monkeypatch, sizes
):
    """100 results in the grid, then a smaller window: the pool of cells shrinks while
    cells are being bound; the app keeps running and the grid is whole afterwards."""
    from dataclasses import replace

    from clipseek.search.query import SearchResponse

    home = Path(os.environ["HOME"])
    pictures = sorted(str(p) for p in (home / "Pictures").rglob("*.bmp"))
    many = _results([pictures[i % len(pictures)] for i in range(100)])
    app = make_app(replace(at_home, view="grid"), loaded_tiny_model)
    big, small = sizes
    async with app.run_test(size=big) as pilot:
        await wait_for(pilot, lambda: app.model_ready)
        await search(pilot, "a picture")
        screen = app.search_screen
        response = SearchResponse(query="a picture", model="tiny", results=many)
        from clipseek.tui import messages as msg

        screen.post_message(msg.SearchDone(screen._token, response))
        grid = _grid(app)
        await wait_for(pilot, lambda: len(grid.results) == 100 and grid.complete)
        await pilot.resize_terminal(*small)
        await pilot.pause()
        await pilot.pause()
        await wait_for(pilot, lambda: grid.complete)
        assert app.is_running and app.return_code is None
        assert screen.grid_active
        assert len(grid.cells) == grid.columns * grid.rows
        await pilot.press("pagedown")
        await pilot.resize_terminal(*big)
        await pilot.pause()
        await wait_for(pilot, lambda: grid.complete)
        assert app.is_running and len(grid.cells) == grid.columns * grid.rows


# ----------------------------------------------------------------- 13: the Top box


@pilot_test
async def test_top_k_runs_the_text_now_in_the_query_box(at_home, loaded_tiny_model):
    """A description typed (no Enter) and then a new count: the count applies to what the
    box says, not to the search shown before."""
    from clipseek.tui.widgets.topk import TopKInput

    app = make_app(at_home, loaded_tiny_model)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.model_ready)
        await search(pilot, "a red circle")
        screen = app.search_screen
        query = screen.query_one("#query")
        query.focus()
        query.value = ""
        await pilot.press(*"a blue square")
        await pilot.press("escape", "plus")  # leave the box, one more result
        await wait_for(pilot, lambda: len(rows(app)) == 6)
        expected = app.engine.search("a blue square", 6).results
        red = app.engine.search("a red circle", 6).results
        assert [r.path for r in expected] != [r.path for r in red]
        assert [r.path for r in rows(app)] == [r.path for r in expected]
        assert screen.query_text == "a blue square"

        # The Top box itself, typed into and left with Enter.
        query.value = "a green forest"
        top_k = screen.query_one(TopKInput)
        top_k.focus()
        await pilot.press("backspace", "3", "enter")
        await wait_for(pilot, lambda: len(rows(app)) == 3)
        expected = app.engine.search("a green forest", 3).results
        assert [r.path for r in rows(app)] == [r.path for r in expected]

        # A similar-pictures search shows a path in the box; a new count keeps it.
        await pilot.press("escape")
        screen.query_one("#results").focus()
        first = rows(app)[0].path
        token = screen._token
        await pilot.press("s")
        await wait_for(pilot, lambda: screen._token > token and rows(app))
        await wait_for(pilot, lambda: first not in [r.path for r in rows(app)])
        await pilot.press("plus")
        await wait_for(pilot, lambda: len(rows(app)) == 4)
        assert first not in [r.path for r in rows(app)]
