"""What a hands-on trial of the app found (issue 13), each driven with Pilot."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("textual")

from tests.support.app import make_app, pilot_test, rows, search
from tests.support.engines import engine_with, settings_for
from tests.support.waiting import wait_until_async

# The app's library (``library``, ``at_home``) and pinned cell sizes: fixtures in tests/conftest.py.
pytestmark = pytest.mark.usefixtures("fixed_cells")


def _shown_text(widget) -> str:
    """The characters a widget draws on screen, line by line."""
    return "\n".join(
        "".join(segment.text for segment in widget.render_line(y))
        for y in range(widget.size.height)
    )


@pytest.mark.slow  # several seconds of CPU
@pilot_test
async def test_top_k_box_shows_two_and_three_digit_counts(at_home, loaded_tiny_model):
    from clipseek.tui.widgets.topk import TopKInput

    app = make_app(at_home, loaded_tiny_model)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until_async(lambda: app.model_ready)
        await search(pilot, "a photo")
        for _ in range(5):
            await pilot.press("plus")
        await wait_until_async(lambda: len(rows(app)) == 10)
        top_k = app.search_screen.query_one(TopKInput)
        assert top_k.content_region.width >= 4  # three digits and the cursor
        await pilot.pause()
        assert "10" in _shown_text(top_k)
        top_k.focus()
        await pilot.press("backspace", "1", "2", "3")
        await pilot.pause()
        assert "123" in _shown_text(top_k)


@pytest.mark.slow  # seconds
@pilot_test
async def test_typing_a_query_with_no_index_stays_in_the_query_box(
    tmp_path, tiny_model_dir, loaded_tiny_model
):
    from clipseek.tui.app import ClipseekApp

    settings = settings_for(tiny_model_dir, tmp_path / "empty-db")
    app = ClipseekApp(
        engine=engine_with(settings, loaded_tiny_model), preview="none", clock=lambda: 1000.0
    )
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.search_screen
        box = screen.query_one("#query")
        for i, char in enumerate("a red circle"):
            await pilot.press("space" if char == " " else char)
            if i == 3:  # the index status arrives while the user is typing
                await wait_until_async(lambda: app.index_count == -1)
                await pilot.pause()
        await pilot.press("enter")
        await wait_until_async(lambda: app.model_ready)
        await pilot.pause()
        assert app.screen is screen
        assert box.value == "a red circle"
        assert app.focused is box
        # nothing focused (after Esc): the button is the next step, as before
        await pilot.press("escape")
        await pilot.pause()
        screen._offering_index = False
        screen._show_state()
        await pilot.pause()
        assert app.focused is screen.query_one("#empty-index")


@pytest.mark.slow  # several seconds of CPU
@pilot_test
async def test_indexing_counts_read_as_planned_while_running(at_home, loaded_tiny_model):
    from clipseek.indexing import events as ev
    from clipseek.tui.jobs import IndexJob

    app = make_app(at_home, loaded_tiny_model)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until_async(lambda: app.model_ready)
        job = IndexJob(roots=["/x"], model=app.model_name, location="", clock=app.clock)
        app.index_job = job
        for event in (
            ev.PlanReady(total=300, new=300, changed=0, unchanged=0, removed=0),
            ev.BatchDone(1, 14, 14, 300, 14, 0, 5.0),
            ev.BatchDone(2, 1, 15, 300, 15, 0, 5.0),
        ):
            app.apply_index_event(job, event)
        await pilot.press("escape", "i")
        await pilot.pause()
        screen = app.indexing_screen
        counts = str(screen.query_one("#run-counts").render())
        stats = str(screen.query_one("#run-stats").render())
        assert "300 new to add" in counts and "failed so far" in counts
        assert "(1 image)" in stats and "(1 images)" not in stats
        assert "15 of 300" in stats and " · Elapsed" in stats
        summary = ev.IndexSummary(roots=["/x"], total=300, new=296, failed=[])
        app.apply_index_event(job, ev.IndexFinished(summary))
        await pilot.pause()
        counts = str(screen.query_one("#run-counts").render())
        assert "296 new" in counts and "to add" not in counts


@pytest.mark.slow  # several seconds of CPU
@pilot_test
async def test_small_terminals_give_the_results_the_room(at_home, loaded_tiny_model):
    from clipseek.tui.widgets.results import ResultRow

    app = make_app(at_home, loaded_tiny_model)
    async with app.run_test(size=(60, 15)) as pilot:
        await wait_until_async(lambda: app.model_ready)
        await search(pilot, "a photo")
        screen = app.search_screen
        assert not screen.query_one("#preview").display  # no 3-cell preview
        assert screen.query_one("#results-pane").size.width >= 50
        assert not screen.query_one("#status").display
    app = make_app(at_home, loaded_tiny_model)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until_async(lambda: app.model_ready)
        await search(pilot, "a photo")
        screen = app.search_screen
        assert screen.query_one("#preview").display
        width = screen.query_one("#results").content_size.width
        from rich.console import Console

        console = Console(width=width)
        for result in rows(app):
            lines = console.render_lines(ResultRow(result, 1.0, "#ffffff", "#888888"), pad=False)
            first = "".join(seg.text for seg in lines[0])
            name = os.path.basename(result.path)
            assert first.rstrip().endswith(name[-6:]), (first, name)  # the end survives
    app = make_app(at_home, loaded_tiny_model, preview="none")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until_async(lambda: app.model_ready)
        await search(pilot, "a photo")
        screen = app.search_screen
        assert screen.query_one("#results-pane").size.width > 40
        assert screen.query_one("#preview").size.width <= 34


@pytest.mark.slow  # several seconds of CPU
@pilot_test
async def test_copy_says_where_the_path_went(at_home, loaded_tiny_model, monkeypatch):
    from clipseek.tui import system

    app = make_app(at_home, loaded_tiny_model)
    async with app.run_test(notifications=True) as pilot:
        await wait_until_async(lambda: app.model_ready)
        await search(pilot, "a dog")
        monkeypatch.setattr(system, "clipboard_command", lambda *a, **k: None)
        await pilot.press("c")
        await wait_until_async(
            lambda: any("terminal's clipboard" in n.message for n in app._notifications)
        )
        note = next(n.message for n in app._notifications if "terminal's clipboard" in n.message)
        assert "select the path" in note
        monkeypatch.setattr(system, "clipboard_command", lambda *a, **k: ["cat"])
        await pilot.press("c")
        await wait_until_async(lambda: any("via cat" in n.message for n in app._notifications))


def test_reveal_errors_name_the_folder(tmp_path, monkeypatch) -> None:
    from clipseek.errors import ClipseekError
    from clipseek.tui import system

    picture = tmp_path / "holiday" / "boat.jpg"
    picture.parent.mkdir()
    picture.write_bytes(b"x")
    monkeypatch.setattr(system.shutil, "which", lambda name: None)
    monkeypatch.setattr(system.sys, "platform", "linux")
    with pytest.raises(ClipseekError) as caught:
        system.launch(str(picture), reveal=True)
    assert f"the folder {picture.parent}" in str(caught.value)
    assert "boat.jpg" not in str(caught.value)


@pilot_test
async def test_folder_picker_goes_above_home_and_follows_typing(
    at_home, loaded_tiny_model, tmp_path
):
    from pathlib import Path

    from clipseek.tui.widgets.folders import FolderSuggester, FolderTree

    outside = tmp_path / "mnt" / "photos"
    outside.mkdir(parents=True)
    app = make_app(at_home, loaded_tiny_model)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until_async(lambda: app.model_ready)
        await pilot.press("escape", "i")
        await pilot.pause()
        screen = app.indexing_screen
        tree = screen.query_one("#folder-tree", FolderTree)
        home = Path(os.environ["HOME"])
        assert Path(tree.path) == home
        screen.query_one("#folder").value = str(outside)
        await pilot.pause()
        assert Path(tree.path) == outside
        tree.focus()
        await pilot.press("backspace")
        await pilot.pause()
        assert Path(tree.path) == outside.parent
    index_parent = Path(at_home.db).parent
    suggest = FolderSuggester(skip=[str(at_home.db)])
    typed = str(index_parent / at_home.db.name[:2])
    assert await suggest.get_suggestion(typed) is None
    assert await FolderSuggester().get_suggestion(typed) == str(at_home.db) + os.sep


def _footer_keys_fit(screen) -> tuple[list[str], list[str]]:
    """(shown, hidden) key descriptions of a screen's footer; asserts each shown key is
    drawn whole, left of the palette key."""
    from textual.widgets import Footer
    from textual.widgets._footer import FooterKey

    footer = screen.query_one(Footer)
    palette = footer.query(FooterKey).filter(".-command-palette").first()
    shown, hidden = [], []
    for key in footer.query(FooterKey):
        if key is palette:
            continue
        if not key.display:
            hidden.append(key.description)
            continue
        assert key.region.width > 0 and key.region.right <= palette.region.x, key.description
        shown.append(key.description)
    return shown, hidden


@pytest.mark.slow  # several seconds of CPU
@pilot_test
async def test_the_footer_drops_whole_keys_never_letters(at_home, loaded_tiny_model):
    app = make_app(at_home, loaded_tiny_model)
    async with app.run_test(size=(60, 15)) as pilot:
        await wait_until_async(lambda: app.model_ready)
        await search(pilot, "a photo")
        await pilot.pause()
        shown, hidden = _footer_keys_fit(app.search_screen)
        assert shown[:2] == ["Search", "Open"] and hidden  # the first keys stay, in order
        await pilot.resize_terminal(140, 30)
        await pilot.pause()
        await pilot.pause()
        shown, hidden = _footer_keys_fit(app.search_screen)
        assert hidden == [] and "Index" in shown


@pytest.mark.slow  # seconds
@pilot_test
async def test_a_run_on_a_60x15_terminal_keeps_its_buttons_on_screen(at_home, loaded_tiny_model):
    from pathlib import Path

    from textual.widgets import Footer

    from clipseek.indexing import events as ev
    from clipseek.tui.jobs import IndexJob

    app = make_app(at_home, loaded_tiny_model)
    home = Path(os.environ["HOME"])
    async with app.run_test(size=(60, 15)) as pilot:
        await wait_until_async(lambda: app.model_ready)
        job = IndexJob(
            roots=[str(home / "Pictures")], model=app.model_name, location="", clock=app.clock
        )
        app.index_job = job
        for event in [
            ev.PlanReady(total=1840, new=1200, changed=40, unchanged=560, removed=3),
            ev.FileFailed(str(home / "Pictures/IMG_0042.jpg"), "image file is truncated"),
            ev.BatchDone(1, 32, 32, 1240, 31, 1, 24.0),
        ]:
            app.apply_index_event(job, event)
        await pilot.press("escape", "i")
        await pilot.pause()
        screen = app.indexing_screen
        footer_top = screen.query_one(Footer).region.y
        for name in ("#run-stop", "#run-back", "#run-problems", "#run-progress"):
            region = screen.query_one(name).region
            assert region.height > 0 and region.bottom <= footer_top, name
        _footer_keys_fit(screen)
        await pilot.click("#run-stop")
        await wait_until_async(lambda: job.cancel.is_set())  # a click on it reaches it
