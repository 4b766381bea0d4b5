"""The app as the hands-on trial of issue 25 used it: resizing, focus, the Top box,
the gallery's size and keys, the filter line's words and previews on narrow terminals.

Driven headless with Pilot against the small library of tests/conftest.py.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.support.app import make_app, pilot_test, rows, search, text_of
from tests.support.waiting import wait_until_async

# Seconds of Pilot each (the quick tier stays under two minutes without them).
pytestmark = [pytest.mark.usefixtures("fixed_cells"), pytest.mark.slow]

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
    at_home, loaded_tiny_model, sizes
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
        await wait_until_async(lambda: app.model_ready)
        await search(pilot, "a picture")
        screen = app.search_screen
        response = SearchResponse(query="a picture", model="tiny", results=many)
        from clipseek.tui import messages as msg

        screen.post_message(msg.SearchDone(screen._token, response))
        grid = _grid(app)
        await wait_until_async(lambda: len(grid.results) == 100 and grid.complete)
        await pilot.resize_terminal(*small)
        await pilot.pause()
        await pilot.pause()
        await wait_until_async(lambda: grid.complete)
        assert app.is_running and app.return_code is None
        assert screen.grid_active
        assert len(grid.cells) == grid.columns * grid.rows
        await pilot.press("pagedown")
        await pilot.resize_terminal(*big)
        await pilot.pause()
        await wait_until_async(lambda: grid.complete)
        assert app.is_running and len(grid.cells) == grid.columns * grid.rows


# ----------------------------------------------------------------- 13: the Top box


@pilot_test
async def test_top_k_runs_the_text_now_in_the_query_box(at_home, loaded_tiny_model):
    """A description typed (no Enter) and then a new count: the count applies to what the
    box says, not to the search shown before."""
    from clipseek.tui.widgets.topk import TopKInput

    app = make_app(at_home, loaded_tiny_model)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until_async(lambda: app.model_ready)
        await search(pilot, "a red circle")
        screen = app.search_screen
        query = screen.query_one("#query")
        query.focus()
        query.value = ""
        await pilot.press(*"a blue square")
        await pilot.press("escape", "plus")  # leave the box, one more result
        await wait_until_async(lambda: len(rows(app)) == 6)
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
        await wait_until_async(lambda: len(rows(app)) == 3)
        expected = app.engine.search("a green forest", 3).results
        assert [r.path for r in rows(app)] == [r.path for r in expected]

        # A similar-pictures search shows a path in the box; a new count keeps it.
        await pilot.press("escape")
        screen.query_one("#results").focus()
        first = rows(app)[0].path
        token = screen._token
        await pilot.press("s")
        await wait_until_async(lambda: screen._token > token and rows(app))
        await wait_until_async(lambda: first not in [r.path for r in rows(app)])
        await pilot.press("plus")
        await wait_until_async(lambda: len(rows(app)) == 4)
        assert first not in [r.path for r in rows(app)]


# ----------------------------------------------------------------- 14: the gallery's size and keys


@pilot_test
async def test_the_grid_at_80x24_shows_six_pictures(at_home, loaded_tiny_model):
    """80×24 leaves about 50×17 for the grid: compact cells, three across and two down,
    not one row of two tall cells."""
    from dataclasses import replace

    from tests.support.app import grid_search

    app = make_app(replace(at_home, view="grid"), loaded_tiny_model)
    async with app.run_test(size=(80, 24)) as pilot:
        grid = await grid_search(pilot, top_k=12)
        assert app.search_screen.grid_active
        assert (grid.columns, grid.rows) == (3, 2)
        shown = [c for c in grid.cells if c.result is not None]
        assert len(shown) == 6 and all(c.showing_image for c in shown)
        assert all(c.size.height <= 9 for c in grid.cells)
        # Larger windows keep the regular cells.
        await pilot.resize_terminal(120, 40)
        await wait_until_async(lambda: (grid.columns, grid.rows) == (4, 3))
        await wait_until_async(lambda: grid.complete)
        assert all(c.showing_image for c in grid.cells if c.result is not None)


@pilot_test
async def test_the_grid_without_previews_is_a_grid_of_names_and_says_why(
    at_home, loaded_tiny_model
):
    from dataclasses import replace

    from tests.support.app import grid_search

    app = make_app(replace(at_home, view="grid"), loaded_tiny_model, preview="none")
    async with app.run_test(size=(100, 30)) as pilot:
        grid = await grid_search(pilot, top_k=12)
        screen = app.search_screen
        assert screen.grid_active
        # A cell is its caption and border: three rows (four where the rows stretch).
        assert all(c.size.height <= 4 for c in grid.cells)
        assert grid.columns * grid.rows >= 12
        assert "names only (previews off)" in screen.query_one("#results-pane").border_subtitle
        caption = str(grid.cells[0].query_one(".gallery-caption").render())
        assert caption.startswith("1 ") and (".bmp" in caption or caption.endswith("…"))


@pilot_test
async def test_paging_through_cached_thumbnails_redraws_nothing_twice(tmp_path):
    """Each page asks the decoder pool again for three screenfuls (to re-check the files);
    when nothing changed no message comes back, so a key costs one redraw, not one per
    picture (what made PgDn/PgUp/Home/End lag in the grid)."""
    from textual.app import App

    from clipseek.tui.gallery_thumbs import GalleryThumbnails
    from clipseek.tui.preview import prepare
    from clipseek.tui.widgets.gallery import GalleryGrid
    from tests.support.pictures import make_photo

    folder = tmp_path / "pics"
    folder.mkdir()
    paths = [str(make_photo(folder / f"{i:02d}.png", size=(64, 48), seed=i)) for i in range(48)]
    thumbs = GalleryThumbnails(tmp_path / "cache", workers=2)
    made: list[str] = []

    class GridApp(App[None]):
        CSS_PATH = Path(__file__).parents[1] / "clipseek" / "tui" / "app.tcss"

        def compose(self):
            yield GalleryGrid(thumbs, prepare("halfcell"), id="gallery")

        def on_mount(self):
            grid = self.query_one(GalleryGrid)
            grid.show_results(_results(paths))
            grid.focus()

        def on_gallery_grid_thumbnail_made(self, message) -> None:
            made.append(message.thumbnail.path)

    app = GridApp()
    async with app.run_test(size=(80, 30)) as pilot:
        grid = app.query_one(GalleryGrid)
        await wait_until_async(lambda: grid.cells and grid.complete)
        # Visit every page once so that every thumbnail is made and in memory.
        for _ in range(4):
            await pilot.press("pagedown")
        await pilot.press("end", "home")
        await wait_until_async(lambda: not thumbs.busy)
        await wait_until_async(lambda: all(thumbs.peek(p, grid.pixels) for p in paths))
        await pilot.pause()
        made.clear()
        for key in ["pagedown"] * 3 + ["pageup"] * 3 + ["end", "home"]:
            await pilot.press(key)
            await wait_until_async(lambda: grid.complete and not thumbs.busy)
        await pilot.pause()
        assert grid.index == 0 and grid.complete
        assert made == []
    thumbs.close()


# ----------------------------------------------------------------- 15: focus


@pilot_test
async def test_keys_stay_keys_after_leaving_the_indexing_and_duplicates_screens(
    at_home, loaded_tiny_model
):
    """Esc from the indexing or duplicates screen, and Enter in the filter line, hand the
    keys back to the results: the next d, g or f acts, it is not typed into a box."""
    from textual.widgets import Input

    from clipseek.tui.screens.duplicates import DuplicatesScreen
    from clipseek.tui.screens.indexing import IndexingScreen

    app = make_app(at_home, loaded_tiny_model)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until_async(lambda: app.model_ready)
        screen = app.search_screen
        query = screen.query_one("#query", Input)
        results = screen.query_one("#results")

        # Before any search: nothing to go back to, so no box takes the keys either.
        await pilot.press("escape", "i")
        assert isinstance(app.screen, IndexingScreen)
        await pilot.press("escape")
        assert app.screen is screen and not isinstance(app.focused, Input)
        await pilot.press("d")
        await wait_until_async(lambda: isinstance(app.screen, DuplicatesScreen))
        await pilot.press("escape")
        assert app.screen is screen and not isinstance(app.focused, Input)
        assert query.value == ""

        await search(pilot, "a red square")
        assert app.focused is results
        for key in ("i", "d"):
            await pilot.press(key)
            await wait_until_async(lambda: app.screen is not screen)
            await pilot.press("escape")
            await wait_until_async(lambda: app.screen is screen)
            assert app.focused is results, (key, app.focused)
        assert query.value == "a red square"

        # The filter line: Enter applies it and hands the keys back to the results.
        await pilot.press("f")
        filters = screen.query_one("#filters", Input)
        assert app.focused is filters
        await pilot.press(*"after:2000")
        token = screen._token
        await pilot.press("enter")
        await wait_until_async(lambda: screen._token > token and rows(app))
        await pilot.pause()
        assert app.focused is results
        assert filters.value == "after:2000"
        await pilot.press("g")
        await pilot.pause()
        assert screen.view == "grid" and query.value == "a red square"


@pilot_test
async def test_a_mistyped_filter_keeps_the_focus_in_the_filter_line(at_home, loaded_tiny_model):
    from textual.widgets import Input

    app = make_app(at_home, loaded_tiny_model)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until_async(lambda: app.model_ready)
        await search(pilot, "a red square")
        screen = app.search_screen
        await pilot.press("f", *"after:2024-13", "enter")
        await pilot.pause()
        assert app.focused is screen.query_one("#filters", Input)


@pilot_test
async def test_tab_in_the_folder_box_accepts_the_suggestion(at_home, loaded_tiny_model):
    from textual.widgets import Input

    app = make_app(at_home, loaded_tiny_model)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until_async(lambda: app.model_ready)
        await pilot.press("escape", "i")
        folder = app.screen.query_one("#folder", Input)
        assert app.focused is folder
        await pilot.press(*"~/Pic")
        await wait_until_async(lambda: folder._suggestion == "~/Pictures/")
        await pilot.press("tab")
        assert folder.value == "~/Pictures/" and app.focused is folder
        # With nothing to complete, Tab moves on as everywhere else.
        await pilot.press("tab")
        assert app.focused is not folder


# ----------------------------------------------------------------- 16: the filter line's words


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("after:2024-13", "after:2024-13: no such month or year."),
        ("before:2023-02-29", "before:2023-02-29: 2023-02 has no day 29."),
        ("after:last summer", "after:last summer is not a date: write after:YYYY, after:YYYY-MM"),
        ("after:June", "after:June is not a date"),
        ("after:2024-09 before:2024-06", "after:2024-09 is not before before:2024-06"),
        ("size:big", "size:big is not a size: write size:WIDTHxHEIGHT"),
        ("colour:red", "Filter 'colour:red' not understood"),
        ('camera:"canon eos', "A quote is not closed"),
    ],
)
def test_filter_line_messages_use_the_filter_lines_words(line, says):
    from clipseek.errors import QueryError
    from clipseek.search.filters import parse_filter_line

    with pytest.raises(QueryError) as caught:
        parse_filter_line(line)
    message = str(caught.value)
    assert says in message
    assert "--" not in message and "min_size" not in message


def test_a_camera_name_with_a_space_can_be_written():
    from clipseek.search.filters import make_filters, parse_filter_line

    assert parse_filter_line('camera:"canon eos"').camera == "canon eos"
    assert parse_filter_line("camera:canon eos after:2024").camera == "canon eos"
    quoted = parse_filter_line('after:2024-06 camera:"Canon EOS R5" size:10x10')
    assert quoted.camera == "Canon EOS R5" and (quoted.min_width, quoted.min_height) == (10, 10)
    assert quoted.clauses(["Canon EOS R5", "Canon EOS 5D"]) is not None
    assert {"camera": "Canon EOS R5"} in quoted.clauses(["Canon EOS R5", "Canon EOS 5D"])
    # The command line keeps its own words.
    with pytest.raises(Exception, match="--after 2024-13: no such month"):
        make_filters("2024-13")


@pilot_test
async def test_the_filter_line_in_the_app_speaks_its_own_words(tmp_path):
    from textual.widgets import Input

    from tests.support.app import exif_library_app as _app
    from tests.support.app import names_shown as _names
    from tests.support.pictures import write_exif_library as _write_library

    folder = tmp_path / "library"
    _write_library(folder)
    app = _app(tmp_path, folder)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until_async(lambda: app.model_ready)
        screen = app.search_screen
        await search(pilot, "a yellow circle")
        line = screen.query_one("#filters", Input)
        await pilot.press("f")
        line.value = "after:last summer"
        await pilot.press("enter")
        await pilot.pause()
        message = text_of(screen.query_one("#results-message"))
        assert "after:last summer is not a date" in " ".join(message.split())
        assert "--after" not in message and "'summer'" not in message

        line.value = 'camera:"canon eos"'
        token = screen._token
        await pilot.press("enter")
        await wait_until_async(lambda: screen._token > token and rows(app))
        await pilot.pause()
        assert _names(app) == {"winter.jpg", "old.jpg"}


# ----------------------------------------------------------------- 17: narrow terminals, scores


@pilot_test
async def test_below_70_columns_without_a_viewer_the_picture_is_shown_in_the_app(
    at_home, loaded_tiny_model, monkeypatch, tmp_path
):
    from clipseek.tui.screens.viewer import ViewerScreen

    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no xdg-open, no open, no explorer
    app = make_app(at_home, loaded_tiny_model, opener=None)
    async with app.run_test(size=(60, 20), notifications=True) as pilot:
        await wait_until_async(lambda: app.model_ready)
        await search(pilot, "a red square")
        screen = app.search_screen
        assert not screen.query_one("#preview").display
        shown = rows(app)

        await pilot.press("o")  # nothing to open it with: it is shown here instead
        await wait_until_async(lambda: isinstance(app.screen, ViewerScreen))
        viewer = app.screen
        await wait_until_async(lambda: viewer.pane.showing_image)
        assert viewer.pane.result.path == shown[0].path
        assert any("showing it in clipseek" in n.message for n in app._notifications)
        await pilot.press("right")
        await wait_until_async(lambda: viewer.pane.result.path == shown[1].path)
        await wait_until_async(lambda: viewer.pane.showing_image)
        await pilot.press("escape")
        await wait_until_async(lambda: app.screen is screen)
        assert screen.selected.path == shown[1].path  # the one seen last stays selected

        await pilot.press("v")
        await wait_until_async(lambda: isinstance(app.screen, ViewerScreen))
        assert app.screen.pane.result.path == shown[1].path
        await pilot.press("escape")
        await wait_until_async(lambda: app.screen is screen)


async def _copy_note(settings, model, size: tuple[int, int]) -> str:
    app = make_app(settings, model)
    async with app.run_test(size=size, notifications=True) as pilot:
        await wait_until_async(lambda: app.model_ready)
        await search(pilot, "a dog")
        await pilot.press("c")
        await wait_until_async(lambda: any("clipboard" in n.message for n in app._notifications))
        return next(n.message for n in app._notifications if "clipboard" in n.message)


@pilot_test
async def test_the_copy_message_points_at_a_preview_that_is_on_screen(
    at_home, loaded_tiny_model, monkeypatch
):
    from clipseek.tui import system

    monkeypatch.setattr(system, "clipboard_command", lambda *a, **k: None)
    narrow = await _copy_note(at_home, loaded_tiny_model, (60, 20))
    assert "select the path in the full-screen preview (v)." in narrow
    wide = await _copy_note(at_home, loaded_tiny_model, (100, 30))
    assert "select the path in the preview." in wide


def test_negative_scores_keep_the_name_column_in_place():
    from rich.console import Console

    from clipseek.search.query import SearchResult
    from clipseek.tui.widgets.results import ResultRow, score_width

    results = [
        SearchResult(rank=1, path="/p/first.jpg", score=0.123, id="1"),
        SearchResult(rank=2, path="/p/second.jpg", score=-0.045, id="2"),
        SearchResult(rank=10, path="/p/third.jpg", score=-0.5, id="3"),
    ]
    width = score_width(results)
    console = Console(width=60, file=None)
    starts = []
    for result in results:
        row = ResultRow(result, 0.123, "#ffffff", "#888888", width)
        lines = console.render_lines(row, pad=False)
        first = "".join(seg.text for seg in lines[0])
        starts.append(first.index(result.path.rsplit("/", 1)[1]))
    assert len(set(starts)) == 1, starts


# ----------------------------------------------------------------- 1: names on screen


def _screen_text(app) -> str:
    """Every character the terminal would be sent for the screen now (toasts included)."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(segment.text for segment in strip) for strip in strips)


def _shows(screen_text: str, name: str) -> bool:
    """``name`` is on screen, perhaps wrapped over lines of a bordered box."""
    flat = re.sub(r"[\s│]", "", screen_text)
    return re.sub(r"\s", "", name) in flat


@pilot_test
async def test_every_name_the_app_shows_goes_through_the_display_rule(tmp_path):
    """File and folder names holding escape sequences, a bell and Textual markup: every
    screen (indexing problems, the folder tree, results, preview, grid, full-screen view,
    duplicates, notifications) shows them under pathtext's display rule, as plain text:
    no raw ESC or BEL reaches the terminal, and ``[b]`` is shown, not obeyed."""
    import shutil

    from textual.widgets import Input

    from clipseek.config import load_settings
    from clipseek.engine import Engine
    from clipseek.photos import pathtext
    from clipseek.testing import fixture_model_spec
    from clipseek.tui.app import ClipseekApp
    from clipseek.tui.screens.duplicates import DuplicatesScreen
    from clipseek.tui.screens.viewer import ViewerScreen
    from tests.support.pictures import make_photo

    def shown(name: str) -> str:
        return pathtext.display_path(name)

    folder = tmp_path / "library"
    odd = "a\x1b[31mRED\x1b]0;TITLE\x07[b]b.png"
    make_photo(folder / odd, size=(96, 64), seed=1)
    shutil.copy(folder / odd, folder / "copy [b]bold\x1b[2J.png")  # a duplicate pair
    make_photo(folder / "plain.png", size=(96, 64), seed=2)
    (folder / "bad\x1b[2J[red].jpg").write_bytes(b"not a picture")
    sub = folder / "[b]sub\x1b[31m"
    make_photo(sub / "inside.png", size=(96, 64), seed=3)

    settings = load_settings(
        {"model": fixture_model_spec(), "db": tmp_path / "db", "device": "cpu", "precision": "fp32"}
    )
    opened: list[str] = []
    app = ClipseekApp(
        engine=Engine(settings),
        preview="halfcell",
        clock=lambda: 1000.0,
        opener=lambda path, reveal: opened.append(path),
    )

    def clean(where: str) -> str:
        text = _screen_text(app)
        assert "\x1b" not in text and "\x07" not in text, where
        return text

    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await wait_until_async(lambda: app.model_ready)
        await pilot.press("escape", "i")
        box = app.screen.query_one("#folder", Input)
        box.value = str(folder)
        await pilot.press("enter")
        await wait_until_async(lambda: app.index_job is not None and not app.index_job.running)
        await pilot.pause()
        assert [f.path for f in app.index_job.failures] == [str(folder / "bad\x1b[2J[red].jpg")]
        text = clean("indexing problems")
        assert _shows(text, shown("bad\x1b[2J[red].jpg"))

        # The folder tree, rooted at the library.
        await pilot.press("n")
        box.value = str(folder) + os.sep
        await pilot.pause()
        tree = app.screen.query_one("#folder-tree")
        await wait_until_async(lambda: _shows(_screen_text(app), shown("[b]sub\x1b[31m")))
        clean("folder tree")
        assert tree.is_mounted

        await pilot.press("escape")
        await wait_until_async(lambda: app.screen is app.search_screen)
        await search(pilot, "a picture")
        assert len(rows(app)) >= 3
        text = clean("results and preview")
        assert _shows(text, shown("a\x1b[31mRED")) and _shows(text, shown("[b]sub\x1b[31m"))
        screen = app.search_screen
        odd_row = next(i for i, r in enumerate(rows(app)) if r.path == str(folder / odd))
        screen.query_one("#results").highlighted = odd_row
        await pilot.pause()
        pane = screen.query_one("#preview")
        await wait_until_async(lambda: pane.result.path == str(folder / odd))
        text = clean("the preview of the odd name")
        assert _shows(text, shown(odd))  # in the path, unabridged
        for key in ("o", "c"):  # notifications quote the name
            await pilot.press(key)
            await pilot.pause()
            clean(f"after {key}")
        assert opened == [str(folder / odd)] and app.is_running

        await pilot.press("g")
        await wait_until_async(lambda: screen.grid_active)
        await wait_until_async(lambda: screen.query_one("#gallery").complete)
        clean("grid")
        await pilot.press("v")
        await wait_until_async(lambda: isinstance(app.screen, ViewerScreen))
        for _ in range(4):
            await pilot.press("right")
            await pilot.pause()
            clean("full-screen view")
        await pilot.press("escape", "g")
        await wait_until_async(lambda: app.screen is screen and not screen.grid_active)

        await pilot.press("d")
        await wait_until_async(lambda: isinstance(app.screen, DuplicatesScreen))
        dups = app.screen
        await wait_until_async(lambda: dups.groups)
        await pilot.pause()
        text = clean("duplicates")
        assert _shows(text, shown("copy [b]bold\x1b[2J.png"))
        assert app.is_running and app.return_code is None
