"""The full-screen app, driven headless with Textual's Pilot against a real engine.

The engine runs the tiny test model (loaded once per session) over a small
library of pictures indexed once per module; tests that change an index build
their own. Snapshot tests pin everything that could vary: the home folder (so
paths read ``~/Pictures/...``), file dates, the clock, the cell size and the
preview renderer.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from tests.support.app import (
    APP_LIBRARY,
    busy,
    make_app,
    make_pictures,
    no_blink,
    pilot_test,
    rows,
    search,
    send_key,
    text_of,
)
from tests.support.engines import engine_with, settings_for
from tests.support.probes import run_python
from tests.support.waiting import wait_until_async

pytest.importorskip("textual")

# The app's library (``library``, ``at_home``) and pinned cell sizes: fixtures in tests/conftest.py.
pytestmark = pytest.mark.usefixtures("fixed_cells")


# --------------------------------------------------------------------------- search


@pilot_test
async def test_search_lists_results_by_score_and_preview_follows(at_home, loaded_tiny_model):
    from clipseek.tui.widgets.preview import PreviewPane

    app = make_app(at_home, loaded_tiny_model)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until_async(lambda: app.model_ready)
        await search(pilot, "a red square")
        shown = rows(app)
        expected = app.engine.search("a red square", 5)
        assert [r.path for r in shown] == [r.path for r in expected.results]
        scores = [r.score for r in shown]
        assert scores == sorted(scores, reverse=True) and len(shown) == 5
        assert app.focused is app.search_screen.query_one("#results")

        pane = app.search_screen.query_one(PreviewPane)
        await wait_until_async(lambda: pane.showing_image)
        assert pane.result.path == shown[0].path
        await pilot.press("down")
        await wait_until_async(lambda: pane.result.path == shown[1].path and pane.showing_image)
        assert pane.thumbnail.path == shown[1].path
        assert pane.thumbnail.width == 96 + 8 * (APP_LIBRARY.index(Path(shown[1].path).name) % 4)
        # the thumbnails of all results were made in the background and cached
        await wait_until_async(lambda: not busy(app, "prefetch"))
        assert all(app.thumbnails.peek(r.path) is not None for r in shown)


@pytest.mark.slow  # several seconds of CPU
@pilot_test
async def test_top_k_keys_and_typing_change_the_number_of_rows(at_home, loaded_tiny_model):
    from clipseek.tui.widgets.topk import TopKInput

    app = make_app(at_home, loaded_tiny_model)
    async with app.run_test() as pilot:
        await wait_until_async(lambda: app.model_ready)
        await search(pilot, "a photo")
        assert len(rows(app)) == 5
        await pilot.press("plus", "plus")
        await wait_until_async(lambda: len(rows(app)) == 7)
        await pilot.press("minus")
        await wait_until_async(lambda: len(rows(app)) == 6)
        top_k = app.search_screen.query_one(TopKInput)
        top_k.focus()
        await pilot.press("backspace", "3", "enter")
        await wait_until_async(lambda: len(rows(app)) == 3)
        # more than the index holds: every image, once
        await pilot.press("backspace", "9", "9", "enter")
        await wait_until_async(lambda: len(rows(app)) == len(APP_LIBRARY))
        assert top_k.count == 99


@pytest.mark.slow  # several seconds of CPU
@pilot_test
async def test_compound_query_and_find_similar(at_home, loaded_tiny_model):
    app = make_app(at_home, loaded_tiny_model)
    async with app.run_test() as pilot:
        await wait_until_async(lambda: app.model_ready)
        await search(pilot, '"a cat" + "a hat" - "blurry"')
        from clipseek.search.query import parse_query

        expected = app.engine.search(parse_query(['"a cat" + "a hat" - "blurry"']), 5)
        assert [r.path for r in rows(app)] == [r.path for r in expected.results]

        first = rows(app)[0]
        token = app.search_screen._token
        await pilot.press("s")
        await wait_until_async(lambda: app.search_screen._token > token and not busy(app, "search"))
        await pilot.pause()
        similar = rows(app)
        assert first.path not in [r.path for r in similar]
        assert len(similar) == 5
        query_box = app.search_screen.query_one("#query")
        assert query_box.value.startswith("~/Pictures/")
        from clipseek.search.query import Query

        direct = app.engine.search(Query.image(first.path), 6)
        assert [r.path for r in similar] == [
            r.path for r in direct.results if r.path != first.path
        ][:5]


@pytest.mark.slow  # several seconds of CPU
@pilot_test
async def test_actions_copy_open_and_reveal_the_selection(at_home, loaded_tiny_model):
    opened: list[tuple[str, bool]] = []
    app = make_app(
        at_home, loaded_tiny_model, opener=lambda path, reveal: opened.append((path, reveal))
    )
    async with app.run_test() as pilot:
        await wait_until_async(lambda: app.model_ready)
        await pilot.press("escape", "c")  # nothing selected yet: nothing to copy, no crash
        assert app.clipboard == ""
        await search(pilot, "a dog")
        await pilot.press("down")
        second = rows(app)[1].path
        await pilot.press("c")
        assert app.clipboard == second
        await pilot.press("o")
        await wait_until_async(lambda: len(opened) == 1)
        await pilot.press("r")
        await wait_until_async(lambda: len(opened) == 2)
        await pilot.press("enter")
        await wait_until_async(lambda: len(opened) == 3)
        assert opened == [(second, False), (second, True), (second, False)]

        # The mouse: a click selects a row (two lines each) and the preview follows;
        # only a double click opens.
        fourth = rows(app)[3].path
        await pilot.click("#results", offset=(10, 6))
        pane = app.search_screen.query_one("#preview")
        await wait_until_async(lambda: pane.result is not None and pane.result.path == fourth)
        assert len(opened) == 3
        await pilot.click("#results", offset=(10, 6), times=2)
        await wait_until_async(lambda: len(opened) == 4)
        assert opened[-1] == (fourth, False)


@pilot_test
async def test_command_palette_lists_the_actions(at_home, loaded_tiny_model):
    app = make_app(at_home, loaded_tiny_model)
    async with app.run_test() as pilot:
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for title in ("Open in viewer", "Copy path", "Find similar", "Reveal folder"):
            assert title in titles
        assert "Index a folder" in titles
        await pilot.press("ctrl+p")
        await pilot.pause()
        from textual.command import CommandPalette

        assert isinstance(app.screen, CommandPalette)


@pilot_test
async def test_query_typed_before_the_model_is_ready_runs_when_it_is(at_home, loaded_tiny_model):
    release = threading.Event()

    def slow_loader(*_):
        release.wait(30)
        return loaded_tiny_model

    from clipseek.engine import Engine
    from clipseek.tui.app import ClipseekApp

    app = ClipseekApp(engine=Engine(at_home, model_loader=slow_loader), preview="none")
    async with app.run_test() as pilot:
        await wait_until_async(lambda: app.model_state == "loading")
        query = app.search_screen.query_one("#query")
        query.value = "a boat"
        await pilot.press("enter")
        await pilot.pause()
        message = text_of(app.search_screen.query_one("#results-message"))
        assert "Loading the model" in message
        assert rows(app) == []
        release.set()
        await wait_until_async(lambda: len(rows(app)) == 5)


@pilot_test
async def test_bad_query_says_what_is_wrong(at_home, loaded_tiny_model):
    app = make_app(at_home, loaded_tiny_model)
    async with app.run_test() as pilot:
        await wait_until_async(lambda: app.model_ready)
        await search(pilot, '"a cat" + + "a hat"')
        assert rows(app) == []
        message = text_of(app.search_screen.query_one("#results-message"))
        assert "Two operators in a row" in message
        app.search_screen.refresh_status()  # e.g. an indexing run reporting progress
        message = text_of(app.search_screen.query_one("#results-message"))
        assert "Two operators in a row" in message
        await search(pilot, "~/Pictures/no-such-picture.jpg")
        message = text_of(app.search_screen.query_one("#results-message"))
        assert "does not exist" in message


@pytest.mark.slow  # several seconds of CPU
@pilot_test
async def test_keys_can_be_remapped_from_the_config_file(
    library, loaded_tiny_model, tmp_path, monkeypatch
):
    from clipseek.config import load_settings

    _home, base = library
    config = tmp_path / "config.toml"
    config.write_text('[keys]\n"search.copy" = "y"\n"no.such.binding" = "x"\n')
    monkeypatch.setenv("CLIPSEEK_CONFIG", str(config))
    settings = load_settings(
        {"model": base.model, "db": base.db, "device": "cpu", "precision": "fp32"}
    )
    assert dict(settings.keys) == {"search.copy": "y", "no.such.binding": "x"}
    app = make_app(settings, loaded_tiny_model)
    async with app.run_test(notifications=True) as pilot:
        assert "no.such.binding" in app.keymap_problems
        assert any("no.such.binding" in n.message for n in app._notifications)
        await wait_until_async(lambda: app.model_ready)
        await search(pilot, "a cat")
        await pilot.press("c")
        assert app.clipboard == ""
        await pilot.press("y")
        assert app.clipboard == rows(app)[0].path
        assert app.key_for("search.copy") == "y"
        await pilot.press("question_mark")
        await pilot.pause()
        from clipseek.tui.screens.help import HelpScreen

        assert isinstance(app.screen, HelpScreen)
        keys_text = text_of(app.screen.query_one("#help-keys"))
        assert "search.copy" in keys_text
        await pilot.press("escape")
        assert app.screen is app.search_screen


@pytest.mark.parametrize("problem", ["weights", "bug"])
@pilot_test
async def test_a_model_that_cannot_load_is_reported_not_fatal(at_home, problem, monkeypatch):
    import clipseek.tui.app
    from clipseek.engine import Engine
    from clipseek.errors import WeightsUnavailableError
    from clipseek.tui.app import ClipseekApp

    over: list[bool] = []  # the collector comes back even from a boot that failed
    monkeypatch.setattr(clipseek.tui.app, "start_up_over", lambda: over.append(True))

    def loader(*_):
        if problem == "weights":
            raise WeightsUnavailableError("ViT-B/32 is not on this machine; connect once.")
        raise RuntimeError("boom")

    app = ClipseekApp(engine=Engine(at_home, model_loader=loader), preview="none")
    async with app.run_test(notifications=True) as pilot:
        query = app.search_screen.query_one("#query")
        query.value = "a cat"
        await pilot.press("enter")
        await wait_until_async(lambda: app.model_state == "failed")
        await pilot.pause()
        message = text_of(app.search_screen.query_one("#results-message"))
        expected = "not on this machine" if problem == "weights" else "boom"
        assert expected in message
        assert any(expected in n.message for n in app._notifications)
        assert "not loaded" in text_of(app.search_screen.query_one("#status"))
        assert app.is_running
        await wait_until_async(lambda: over)
        assert over == [True]


@pilot_test
async def test_result_rows_follow_the_theme(at_home, loaded_tiny_model):
    app = make_app(at_home, loaded_tiny_model)
    async with app.run_test() as pilot:
        await wait_until_async(lambda: app.model_ready)
        await search(pilot, "a cat")
        results = app.search_screen.query_one("#results")
        row = results.get_option_at_index(0).prompt
        before = (row.accent, row.muted)
        app.theme = "nord"
        await pilot.pause()
        row = results.get_option_at_index(0).prompt
        after = (row.accent, row.muted)
        assert before != after
        assert results.highlighted == 0


# --------------------------------------------------------------------------- empty states


@pilot_test
async def test_no_index_shows_the_empty_state_and_leads_to_indexing(
    tiny_model_dir, tmp_path, loaded_tiny_model
):
    settings = settings_for(tiny_model_dir, tmp_path / "db")
    app = make_app(settings, loaded_tiny_model)
    async with app.run_test() as pilot:
        await wait_until_async(lambda: app.index_count is not None)
        message = text_of(app.search_screen.query_one("#results-message"))
        assert "No index yet" in message and "press Esc, then i" in message
        assert app.search_screen.query_one("#empty-index").display
        await search(pilot, "a cat")
        message = text_of(app.search_screen.query_one("#results-message"))
        assert "No index yet" in message
        await pilot.click("#empty-index")
        await pilot.pause()
        assert app.screen is app.indexing_screen
        assert app.focused is app.indexing_screen.query_one("#folder")


# --------------------------------------------------------------------------- indexing


@pytest.mark.slow  # several seconds of CPU
@pilot_test
async def test_indexing_screen_indexes_a_folder_and_lists_a_bad_file(
    tiny_model_dir, tmp_path, loaded_tiny_model
):
    from textual.widgets import RichLog

    folder = tmp_path / "pics"
    paths = make_pictures(folder, [f"p{i}.png" for i in range(6)])
    (folder / "broken.jpg").write_text("this is not a picture")
    settings = settings_for(tiny_model_dir, tmp_path / "db", batch_size=4)
    app = make_app(settings, loaded_tiny_model)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until_async(lambda: app.index_count == -1)
        await pilot.press("escape", "i")  # the query box keeps typed letters
        screen = app.indexing_screen
        assert app.screen is screen
        screen.query_one("#folder").value = str(folder)
        await pilot.press("enter")
        await wait_until_async(lambda: app.index_job is not None and not app.index_job.running)
        job = app.index_job
        assert job.error is None and job.summary is not None
        assert job.counts() == {"new": 6, "updated": 0, "unchanged": 0, "removed": 0, "failed": 1}
        assert job.batch is not None and job.batch.number == 2
        problems = "\n".join(line.text for line in screen.query_one(RichLog).lines)
        assert "broken.jpg" in problems and "a text file, not an image" in problems
        await wait_until_async(lambda: app.index_count == 6)

        # Back to searching: the new index answers, and a file deleted since shows as missing.
        await pilot.press("escape")
        assert app.screen is app.search_screen
        await search(pilot, "a picture")
        assert {r.path for r in rows(app)} <= {str(p) for p in paths}
        victim = rows(app)[1].path
        os.remove(victim)
        await pilot.press("down")
        from clipseek.tui.widgets.preview import PreviewPane

        pane = app.search_screen.query_one(PreviewPane)
        await wait_until_async(lambda: pane.thumbnail is not None and pane.thumbnail.missing)
        message = text_of(pane.query_one("#preview-message"))
        assert "no longer on disk" in message


@pytest.mark.slow  # after a stopped run the index is checked in a child process
@pilot_test
async def test_indexing_stops_cleanly_mid_run_and_the_next_run_resumes(
    tiny_model_dir, tmp_path, loaded_tiny_model
):
    folder = tmp_path / "many"
    total = 60
    make_pictures(folder, [f"img{i:03d}.png" for i in range(total)], size=(48, 40))
    settings = settings_for(tiny_model_dir, tmp_path / "db", batch_size=1)
    app = make_app(settings, loaded_tiny_model)
    async with app.run_test() as pilot:
        await wait_until_async(lambda: app.index_count == -1)
        await pilot.press("escape", "i")
        app.indexing_screen.query_one("#folder").value = str(folder)
        # No pilot.press() from here on: it waits for the app to go idle, which it does
        # not do while a run is posting progress.
        app.indexing_screen.query_one("#start").press()
        await wait_until_async(lambda: app.index_job and app.index_job.batch is not None)
        send_key(app, "escape")  # stop after the current batch
        await wait_until_async(lambda: app.index_job.cancel.is_set())
        assert app.screen is app.indexing_screen  # Esc stopped the run; it did not leave
        await wait_until_async(lambda: not app.index_job.running)
        summary = app.index_job.summary
        assert summary is not None and summary.cancelled
        assert "Stopped" in text_of(app.indexing_screen.query_one("#run-head"))

    index = app.engine.open_index()
    stored = index.entries()
    assert 0 < len(stored) < total
    assert len(stored) == summary.new
    assert all(Path(e.path).is_file() for e in stored.values())

    again = engine_with(settings, loaded_tiny_model).index([folder])
    assert not again.cancelled
    assert again.unchanged == len(stored)
    assert again.new == total - len(stored)


@pytest.mark.slow  # seconds
@pilot_test
async def test_leaving_the_indexing_screen_keeps_the_run_going(
    tiny_model_dir, tmp_path, loaded_tiny_model, at_home
):
    """While a run goes on, the search screen shows it and searching still works."""
    from clipseek.indexing import events as ev
    from clipseek.tui.jobs import IndexJob

    app = make_app(at_home, loaded_tiny_model)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until_async(lambda: app.model_ready)
        job = IndexJob(roots=[str(tmp_path)], model="m", location="db", clock=app.clock)
        app.index_job = job
        app.apply_index_event(
            job, ev.PlanReady(total=40, new=40, changed=0, unchanged=0, removed=0)
        )
        app.apply_index_event(job, ev.BatchDone(1, 10, 10, 40, 10, 0, 5.0))
        await pilot.press("escape", "i")
        assert app.screen is app.indexing_screen
        await pilot.press("b")
        assert app.screen is app.search_screen
        status = text_of(app.search_screen.query_one("#status"))
        assert "indexing 25%" in status
        await search(pilot, "a forest")
        assert len(rows(app)) == 5


# --------------------------------------------------------------------------- CLI and start-up


def test_cli_rejects_an_unknown_preview_mode():
    from typer.testing import CliRunner

    from clipseek.cli.app import app

    result = CliRunner().invoke(app, ["tui", "--preview", "ascii-art"])
    assert result.exit_code == 1
    assert "Unknown preview mode 'ascii-art'" in result.output
    assert "halfcell" in result.output


def test_cli_without_a_terminal_explains_instead_of_drawing():
    from typer.testing import CliRunner

    from clipseek.cli.app import app

    result = CliRunner().invoke(app, ["tui"])
    assert result.exit_code == 1
    assert "needs a terminal" in result.output
    bare = CliRunner().invoke(app, [])
    assert bare.exit_code == 0
    assert "Usage" in bare.output and "tui" in bare.output


@pytest.mark.slow  # a fresh interpreter
def test_first_paint_imports_nothing_heavy(tmp_path):
    """The first screen is drawn before torch, open_clip or chromadb are imported."""
    script = (
        "import sys, asyncio\n"
        "from clipseek.config import Settings\n"
        "from clipseek.tui.app import ClipseekApp\n"
        "app = ClipseekApp(Settings(db=sys.argv[1]), preview='unicode')\n"
        "seen = {}\n"
        "async def main():\n"
        "    async with app.run_test() as pilot:\n"
        "        seen['heavy'] = sorted(m for m in ('torch', 'open_clip', 'chromadb')\n"
        "                               if m in sys.modules)\n"
        "        seen['query'] = app.screen.query_one('#query').has_focus\n"
        "asyncio.run(main())\n"
        "print(seen['heavy'], seen['query'])\n"
    )
    out = run_python(script, str(tmp_path / "db"), timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[] True", out.stderr


# --------------------------------------------------------------------------- snapshots


def test_snapshot_search_with_results(snap_compare, at_home, loaded_tiny_model):
    app = make_app(at_home, loaded_tiny_model)

    async def run_before(pilot) -> None:
        await wait_until_async(lambda: app.model_ready)
        await search(pilot, "a sunny beach")
        await pilot.press("down")
        pane = app.search_screen.query_one("#preview")
        await wait_until_async(lambda: pane.showing_image)
        no_blink(pilot)

    assert snap_compare(app, terminal_size=(100, 30), run_before=run_before)


@pytest.mark.slow  # several seconds of CPU
@pytest.mark.parametrize("size", [(80, 24), (60, 15)])
def test_snapshot_search_on_small_terminals(snap_compare, at_home, loaded_tiny_model, size):
    """80×24 is the layout's target (ten results: the top-k box shows two digits); at
    60×15 the results take the whole width."""
    app = make_app(at_home, loaded_tiny_model)

    async def run_before(pilot) -> None:
        await wait_until_async(lambda: app.model_ready)
        await search(pilot, "a sunny beach")
        for _ in range(5):
            await pilot.press("plus")
        await wait_until_async(lambda: len(rows(app)) == 10 and not busy(app, "search"))
        if app.search_screen.query_one("#preview").display:
            pane = app.search_screen.query_one("#preview")
            await wait_until_async(lambda: pane.showing_image)
        no_blink(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


def test_snapshot_empty_state(snap_compare, tiny_model_dir, library, monkeypatch):
    home, _ = library
    monkeypatch.setenv("HOME", str(home))
    from clipseek.tui.app import ClipseekApp

    settings = settings_for(home / "models" / "tiny-clip", home / "nothing-here" / "index")
    from clipseek.engine import Engine

    app = ClipseekApp(engine=Engine(settings), preview="halfcell", clock=lambda: 1000.0)

    async def run_before(pilot) -> None:
        await wait_until_async(lambda: app.index_count is not None)
        no_blink(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


@pytest.mark.slow  # several seconds of CPU
@pytest.mark.parametrize("size", [(100, 30), (60, 15)])
def test_snapshot_indexing_mid_run(snap_compare, at_home, loaded_tiny_model, size):
    """Driven with synthetic engine events, so the numbers on screen are fixed; at 60×15 the
    blank lines go and the buttons take one line, above the footer."""
    from clipseek.indexing import events as ev
    from clipseek.tui.jobs import IndexJob

    clock = [1000.0]
    app = make_app(at_home, loaded_tiny_model, clock=lambda: clock[0])
    home = Path(os.environ["HOME"])

    async def run_before(pilot) -> None:
        await wait_until_async(lambda: app.model_ready)
        job = IndexJob(
            roots=[str(home / "Pictures")], model=app.model_name, location="", clock=app.clock
        )
        app.index_job = job
        events = [
            ev.ScanProgress(500),
            ev.PlanReady(total=1840, new=1200, changed=40, unchanged=560, removed=3),
            ev.ModelLoading("ViT-B/32"),
            ev.ModelReady("ViT-B/32", "cpu", "fp32"),
            ev.FileFailed(str(home / "Pictures/2019/IMG_0042.jpg"), "image file is truncated"),
            ev.BatchDone(1, 32, 32, 1240, 31, 1, 24.0),
            ev.FileFailed(str(home / "Pictures/notes.png"), "a text file, not an image"),
            ev.BatchDone(2, 32, 64, 1240, 62, 2, 25.5),
            ev.BatchDone(3, 32, 512, 1240, 510, 2, 26.1),
        ]
        for event in events:
            app.apply_index_event(job, event)
        clock[0] = 1000.0 + 83
        job.location = "~/.local/share/clipseek/index"
        await pilot.press("escape", "i")
        await pilot.pause()
        no_blink(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)
