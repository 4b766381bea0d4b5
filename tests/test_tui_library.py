"""The app's face of issue 15: the filter line, the date and camera in the details pane,
and the duplicates screen, against real files with known EXIF and the shapes model."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.app import (
    busy,
    exif_library_app,
    make_app,
    names_shown,
    no_blink,
    pilot_test,
    rows,
    search,
    text_of,
)
from tests.support.pictures import plant_duplicates, write_exif_library
from tests.support.waiting import wait_until_async

pytest.importorskip("textual")

# The app's library (``library``, ``at_home``) and pinned cell sizes: fixtures in tests/conftest.py.
pytestmark = pytest.mark.usefixtures("fixed_cells")


@pytest.fixture
def library_app(tmp_path: Path):
    folder = tmp_path / "library"
    write_exif_library(folder)
    return exif_library_app(tmp_path, folder)


@pytest.mark.slow  # several seconds of CPU
@pilot_test
async def test_filter_line_narrows_results_and_reports_bad_input(library_app):
    from textual.widgets import Input

    app = library_app
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until_async(lambda: app.model_ready)
        screen = app.search_screen
        line = screen.query_one("#filters", Input)
        bar = screen.query_one("#filter-bar")
        assert not bar.display  # hidden until asked for: 80×24 keeps its rows for results
        await search(pilot, "a yellow circle")
        assert len(rows(app)) == 5

        await pilot.press("f")  # from the results list: opens the filter line
        assert bar.display and app.focused is line
        await pilot.press(*"camera:pixel")
        assert line.value == "camera:pixel"
        assert screen.query_one("#query", Input).value == "a yellow circle"  # nothing leaked
        token = screen._token
        await pilot.press("enter")
        await wait_until_async(lambda: screen._token > token and not busy(app, "search"))
        await pilot.pause()
        assert names_shown(app) == {"beach-1.jpg", "beach-2.jpg", "blue.jpg"}
        # Enter re-runs the search and hands the keys back to the results (issue 25, 15)
        assert app.focused is screen.query_one("#results")
        assert "filtered" in screen.query_one("#results-pane").border_subtitle

        line.focus()
        line.value = "after:2024-06 before:2024-09 camera:pixel"
        token = screen._token
        await pilot.press("enter")
        await wait_until_async(lambda: screen._token > token and not busy(app, "search"))
        await pilot.pause()
        assert names_shown(app) == {"beach-1.jpg", "beach-2.jpg", "blue.jpg"}

        line.focus()
        line.value = "after:last-summer"
        await pilot.press("enter")
        await pilot.pause()
        assert rows(app) == []
        message = text_of(screen.query_one("#results-message"))
        assert "YYYY-MM" in message and "Traceback" not in message
        assert app.focused is line  # a mistake keeps the focus here, to be put right

        line.value = "colour:red"
        await pilot.press("enter")
        await pilot.pause()
        assert "not understood" in text_of(screen.query_one("#results-message"))

        line.focus()
        line.value = ""  # an empty line is no filter: all five come back
        token = screen._token
        await pilot.press("enter")
        await wait_until_async(lambda: screen._token > token and not busy(app, "search"))
        await pilot.pause()
        assert len(rows(app)) == 5 and screen.filters is None

        # a filter that matches nothing says so instead of showing stale results
        line.value = "camera:hasselblad"
        await search(pilot, "a yellow circle")
        assert rows(app) == []
        assert "hasselblad" in text_of(screen.query_one("#results-message"))


@pilot_test
async def test_details_pane_shows_date_taken_and_camera(library_app):
    from clipseek.tui.widgets.preview import PreviewPane

    app = library_app
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until_async(lambda: app.model_ready)
        await search(pilot, "a yellow circle")
        screen = app.search_screen
        pane = screen.query_one(PreviewPane)
        results = screen.query_one("#results")
        by_name = {Path(r.path).name: i for i, r in enumerate(rows(app))}
        assert "old.jpg" in by_name and "no-exif.jpg" in by_name
        results.highlighted = by_name["old.jpg"]
        await wait_until_async(lambda: pane.result and Path(pane.result.path).name == "old.jpg")
        details = text_of(screen.query_one("#preview-details"))
        assert "2019-05-05 05:05" in details and "taken" in details
        assert "Camera" in details and "Canon EOS R5" in details

        results.highlighted = by_name["no-exif.jpg"]
        await wait_until_async(lambda: Path(pane.result.path).name == "no-exif.jpg")
        details = text_of(screen.query_one("#preview-details"))
        assert "file time" in details and "Camera" not in details


@pytest.mark.slow  # seconds
@pilot_test
async def test_duplicates_screen_lists_groups_and_goes_back(tmp_path: Path):
    from textual.widgets import OptionList

    from clipseek.tui.screens.duplicates import DuplicatesScreen
    from clipseek.tui.widgets.preview import PreviewPane

    folder = tmp_path / "dups"
    planted, singles = plant_duplicates(folder)
    before = sorted(p.name for p in folder.iterdir())
    app = exif_library_app(tmp_path, folder)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until_async(lambda: app.index_count is not None)
        app.search_screen.set_focus(None)
        await pilot.press("d")
        await wait_until_async(lambda: isinstance(app.screen, DuplicatesScreen))
        screen = app.screen
        await wait_until_async(lambda: screen.groups is not None)
        await pilot.pause()
        expected = app.engine.duplicates(0.95)
        assert [len(g.items) for g in screen.groups] == [len(g.items) for g in expected]
        sizes = [len(g.items) for g in screen.groups]
        assert sizes == sorted(sizes, reverse=True) and len(sizes) >= 3
        found = [{Path(i.path).name for i in g.items} for g in screen.groups]
        assert all(any(g <= p for p in planted) for g in found)
        assert not any(set(singles) & g for g in found)

        listing = screen.query_one("#dups-list", OptionList)
        assert app.focused is listing
        first = screen.groups[0].items[0]
        shown = str(listing.get_option_at_index(1).prompt)
        assert Path(first.path).name in shown and f"{first.width}×{first.height}" in shown
        assert "Group 1" in str(listing.get_option_at_index(0).prompt)
        pane = screen.query_one(PreviewPane)
        await wait_until_async(lambda: pane.result is not None and pane.result.path == first.path)
        await pilot.press("down")
        second = screen.groups[0].items[1]
        await wait_until_async(lambda: pane.result.path == second.path)
        await wait_until_async(lambda: pane.showing_image)

        await pilot.press("escape")
        await wait_until_async(lambda: app.screen is app.search_screen)
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing deleted


@pytest.mark.slow  # several seconds of CPU
@pilot_test
async def test_duplicates_screen_says_when_there_are_none(tmp_path: Path):
    from clipseek.testing import make_scene
    from clipseek.tui.screens.duplicates import DuplicatesScreen

    folder = tmp_path / "distinct"
    folder.mkdir()
    for i, caption in enumerate(["a red circle", "a blue square", "a green triangle"]):
        make_scene(caption, size=(160, 120), seed=40 + i).save(folder / f"{i}.jpg")
    app = exif_library_app(tmp_path, folder)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until_async(lambda: app.engine is not None)
        app.action_duplicates()
        await wait_until_async(lambda: isinstance(app.screen, DuplicatesScreen))
        screen = app.screen
        await wait_until_async(lambda: screen.groups is not None)
        await pilot.pause()
        assert screen.groups == []
        assert "No near-duplicates" in text_of(screen.query_one("#dups-status"))
        assert not screen.query_one("#dups-list").display
        await pilot.press("escape")
        await wait_until_async(lambda: app.screen is app.search_screen)


@pytest.mark.slow  # several seconds of CPU
@pytest.mark.parametrize("size", [(80, 24), (60, 15)])
def test_snapshot_filter_line_on_small_terminals(
    snap_compare,
    at_home,
    loaded_tiny_model,
    size,
):
    """The filter line open under the query box still leaves the results room at 80×24
    and 60×15."""
    app = make_app(at_home, loaded_tiny_model)

    async def run_before(pilot) -> None:
        await wait_until_async(lambda: app.model_ready)
        await search(pilot, "a sunny beach")
        await pilot.press("f")
        await pilot.press(*"size:100x60")
        await pilot.press("enter")
        await wait_until_async(lambda: not busy(app, "search") and rows(app))
        if app.search_screen.query_one("#preview").display:
            pane = app.search_screen.query_one("#preview")
            await wait_until_async(lambda: pane.showing_image)
        no_blink(pilot)
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)
