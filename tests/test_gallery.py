"""The gallery (grid) view of the app: layout, keys, mouse, re-flow, fallback, thumbnails.

It runs the app headless with Pilot against the same small indexed library as
tests/test_tui.py (fixtures in tests/conftest.py), with the half-cell renderer.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.app import grid_of, grid_search, make_app, no_blink, pilot_test, search
from tests.support.pictures import make_photo
from tests.support.waiting import wait_until_async

# The app's library (``library``, ``at_home``) and pinned cell sizes: fixtures in tests/conftest.py.
pytestmark = pytest.mark.usefixtures("fixed_cells")

pytest.importorskip("textual")


def grid_settings(settings, **extra):
    from dataclasses import replace

    return replace(settings, view="grid", **extra)


@pytest.mark.slow  # several seconds of CPU
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
        # 120 columns less the details pane, padding and borders (80): four 20-column cells;
        # 40 rows less the bars and borders (33): three 10-row ones.
        assert (grid.columns, grid.rows) == (4, 3)
        expected = app.engine.search("a picture", 12).results
        assert [r.path for r in grid.results] == [r.path for r in expected]
        shown = [c for c in grid.cells if c.result is not None]
        assert all(c.showing_image for c in shown)
        assert [c.result.rank for c in shown] == list(range(1, len(shown) + 1))

        pane = screen.query_one(PreviewPane)
        assert pane.result.path == expected[0].path and pane.border_title == "Details"
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


@pytest.mark.slow  # several seconds of CPU
@pilot_test
async def test_grid_reflows_on_resize_and_falls_back_to_the_list_when_small(
    at_home, loaded_tiny_model
):
    app = make_app(grid_settings(at_home), loaded_tiny_model)
    async with app.run_test(size=(120, 40)) as pilot:
        grid = await grid_search(pilot, top_k=12)
        screen = app.search_screen
        before = grid.columns
        await pilot.press("right", "right")
        chosen = screen.selected.path

        await pilot.resize_terminal(180, 40)
        await wait_until_async(lambda: grid.columns > before)
        await wait_until_async(lambda: grid.complete)
        assert len(grid.cells) == grid.columns * grid.rows
        assert screen.selected.path == chosen  # the selection survives a re-flow

        # Below 70 columns (no room for the details pane): the list takes over, same
        # selection, and the grid comes back when the window grows again.
        await pilot.resize_terminal(69, 24)
        await pilot.pause()
        results = screen.query_one("#results")
        assert not screen.grid_active and screen.view == "grid"
        assert results.display and not grid.display
        assert screen.selected.path == chosen and app.focused is results
        assert "too small" in screen.query_one("#results-pane").border_subtitle
        await pilot.press("down")
        chosen = screen.selected.path

        await pilot.resize_terminal(120, 40)
        await pilot.pause()
        assert screen.grid_active and grid.display and app.focused is grid
        assert screen.selected.path == chosen


@pytest.mark.slow  # several seconds of CPU
@pilot_test
async def test_g_toggles_the_grid_and_the_choice_is_saved_in_the_config(
    at_home, loaded_tiny_model, tmp_path, monkeypatch
):
    from clipseek.config import load_settings

    config = tmp_path / "config.toml"
    config.write_text('# my settings\nbatch_size = 8\n\n[keys]\nquit = "ctrl+x"\n')
    monkeypatch.setenv("CLIPSEEK_CONFIG", str(config))
    app = make_app(at_home, loaded_tiny_model)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until_async(lambda: app.model_ready)
        await search(pilot, "a cat")
        screen = app.search_screen
        assert not screen.grid_active
        await pilot.press("down")
        chosen = screen.selected.path
        await pilot.press("g")
        await pilot.pause()
        grid = grid_of(app)
        assert screen.grid_active and grid.display and app.focused is grid
        assert screen.selected.path == chosen
        saved = load_settings()
        assert saved.view == "grid" and saved.batch_size == 8 and saved.keys == {"quit": "ctrl+x"}
        assert config.read_text().startswith("# my settings\n")
        await pilot.press("g")
        await pilot.pause()
        assert not screen.grid_active and load_settings().view == "list"
        assert app.focused is screen.query_one("#results")


def test_the_view_setting_is_validated(monkeypatch, tmp_path):
    from clipseek.config import load_settings
    from clipseek.errors import ConfigError

    assert load_settings(environ={"CLIPSEEK_VIEW": "Grid"}).view == "grid"
    with pytest.raises(ConfigError, match="Unknown view 'tiles'; use one of: list, grid"):
        load_settings(environ={"CLIPSEEK_VIEW": "tiles"})
    config = tmp_path / "c.toml"
    config.write_text('view = "mosaic"\n')
    monkeypatch.setenv("CLIPSEEK_CONFIG", str(config))
    with pytest.raises(ConfigError, match="Unknown view 'mosaic'"):
        load_settings(environ={})


@pytest.mark.slow  # several seconds of CPU
@pilot_test
async def test_grid_actions_and_mouse(at_home, loaded_tiny_model):
    opened: list[tuple[str, bool]] = []
    app = make_app(
        grid_settings(at_home),
        loaded_tiny_model,
        opener=lambda path, reveal: opened.append((path, reveal)),
    )
    async with app.run_test(size=(100, 30)) as pilot:
        grid = await grid_search(pilot, "a dog", top_k=12)
        screen = app.search_screen
        assert (grid.columns, grid.rows) == (3, 2)
        assert "rows 1–2 of 4" in screen.query_one("#results-pane").border_subtitle
        await pilot.press("right")
        second = grid.results[1].path
        await pilot.press("c")
        assert app.clipboard == second
        await pilot.press("o")
        await wait_until_async(lambda: len(opened) == 1)
        await pilot.press("enter")
        await wait_until_async(lambda: len(opened) == 2)
        assert opened == [(second, False), (second, False)]

        # A click on the third cell selects it and the details follow; a double click opens.
        third = grid.cells[2]
        await pilot.click(third)
        await pilot.pause()
        assert grid.index == 2 and screen.query_one("#preview").result.path == third.result.path
        assert len(opened) == 2
        await pilot.click(third, times=2)
        await wait_until_async(lambda: len(opened) == 3)
        assert opened[-1] == (grid.results[2].path, False)

        # The wheel scrolls the view, not the selection; keys bring the selection back.
        from textual import events

        grid.post_message(events.MouseScrollDown(grid, 1, 1, 0, 1, 0, False, False, False))
        await pilot.pause()
        assert grid.top_row == 1 and grid.index == 2
        assert grid.cells[0].result.path == grid.results[3].path
        await pilot.press("down", "down", "down")
        assert grid.index == 11 and grid.top_row == 2
        await wait_until_async(lambda: grid.complete)

        # s: find similar, from the selection; the grid shows the new answer without it.
        source = screen.selected.path
        token = screen._token
        await pilot.press("s")
        await wait_until_async(lambda: screen._token > token and screen.response is not None)
        await wait_until_async(lambda: source not in [r.path for r in grid.results])
        assert grid.index == 0 and grid.top_row == 0
        assert os.path.basename(source) in screen.query_one("#query").value


@pytest.mark.slow  # several seconds of CPU
@pytest.mark.parametrize("renderer", ["sixel", "tgp", "none"])
@pilot_test
async def test_grid_draws_with_the_graphics_renderers_too(at_home, loaded_tiny_model, renderer):
    """Sixel and kitty graphics cannot be snapshotted, but the grid must draw with them (a
    frame is rendered), and with previews off the cells still show rank, score and name."""
    app = make_app(grid_settings(at_home), loaded_tiny_model, preview=renderer)
    async with app.run_test(size=(120, 40)) as pilot:
        grid = await grid_search(pilot, "a boat", top_k=8)
        await pilot.press("right")
        await pilot.pause()
        cells = [c for c in grid.cells if c.result is not None]
        assert len(cells) == 8
        if renderer == "none":
            assert not any(c.showing_image for c in cells)
        else:
            assert all(c.showing_image for c in cells)
        assert "0." in str(cells[1].query_one(".gallery-caption").render())
        app.save_screenshot(path=str(at_home.db.parent), filename=f"grid-{renderer}.svg")


# --------------------------------------------------------------------------- thumbnails


def _jpeg(path: Path, size=(1600, 1200), seed=0) -> Path:
    return make_photo(path, size=size, seed=seed)


def test_thumbnails_are_cell_sized_and_a_second_session_reads_them_from_disk(tmp_path):
    from clipseek.tui.gallery_thumbs import GalleryThumbnails

    photo = _jpeg(tmp_path / "pics" / "big.jpg")
    cache = tmp_path / "cache"
    first = GalleryThumbnails(cache)
    thumb = first.load(str(photo), (370, 140))
    assert thumb.image is not None and thumb.image.width <= 370 and thumb.image.height <= 140
    assert (thumb.width, thumb.height) == (1600, 1200)
    assert first.decoded == 1 and first.load(str(photo), (370, 140)) is thumb  # memory hit
    assert len(list(cache.rglob("*.jpg"))) == 1

    second = GalleryThumbnails(cache)
    again = second.load(str(photo), (370, 140))
    assert second.decoded == 0 and second.disk_hits == 1
    assert again.image.size == thumb.image.size and (again.width, again.height) == (1600, 1200)
    assert (again.size, again.mtime_ns) == (thumb.size, thumb.mtime_ns)

    # Edited since: the key (size, mtime) changes, so the picture is made again.
    _jpeg(photo, seed=5)
    os.utime(photo, ns=(thumb.mtime_ns + 10**9, thumb.mtime_ns + 10**9))
    fresh = second.load(str(photo), (370, 140))
    assert second.decoded == 1 and fresh.mtime_ns != thumb.mtime_ns
    # Another cell size is another thumbnail.
    assert second.load(str(photo), (100, 60)).image.width <= 100


def test_missing_and_broken_files_give_reasons_and_nothing_is_cached_on_disk(tmp_path):
    from clipseek.tui.gallery_thumbs import GalleryThumbnails

    cache = tmp_path / "cache"
    thumbs = GalleryThumbnails(cache)
    assert thumbs.load(str(tmp_path / "gone.jpg"), (200, 100)).missing
    broken = tmp_path / "broken.jpg"
    broken.write_text("not a picture")
    thumb = thumbs.load(str(broken), (200, 100))
    assert thumb.image is None and not thumb.missing and thumb.problem
    assert not list(cache.rglob("*.jpg"))


def test_the_caches_stay_within_their_budgets_and_a_broken_cache_costs_only_a_decode(tmp_path):
    from clipseek.tui.gallery_thumbs import GalleryThumbnails

    photos = [_jpeg(tmp_path / f"p{i}.jpg", size=(400, 300), seed=i) for i in range(6)]
    cache = tmp_path / "cache"
    thumbs = GalleryThumbnails(cache, memory_bytes=2 * 200 * 150 * 3, disk_bytes=12_000)
    for photo in photos:
        thumbs.load(str(photo), (200, 150))
    assert len(thumbs._items) == 2 and thumbs._held <= thumbs.memory_bytes
    thumbs.prune()
    assert 0 < sum(f.stat().st_size for f in cache.rglob("*.jpg")) <= 12_000

    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    unwritable = GalleryThumbnails(blocked)
    assert unwritable.load(str(photos[0]), (200, 150)).image is not None

    # A damaged cache file is decoded again, not shown broken.
    for file in cache.rglob("*.jpg"):
        file.write_bytes(b"garbage")
    again = GalleryThumbnails(cache)
    assert again.load(str(photos[-1]), (200, 150)).image is not None and again.decoded == 1


def _results(paths: list[str]):
    from clipseek.search.query import SearchResult

    return [
        SearchResult(rank=i + 1, path=p, score=0.9 - i / 1000, id=str(i))
        for i, p in enumerate(paths)
    ]


@pytest.mark.slow  # several seconds of CPU
@pilot_test
async def test_scrolling_through_200_results_never_waits_for_thumbnails(tmp_path, monkeypatch):
    """Decoding is held back by a gate: the keys still move through all 200 results, the
    cells show placeholders, and once the gate opens only what is wanted gets decoded."""
    import threading

    from textual.app import App

    from clipseek.tui.gallery_thumbs import GalleryThumbnails
    from clipseek.tui.preview import prepare
    from clipseek.tui.widgets.gallery import GalleryGrid

    folder = tmp_path / "many"
    folder.mkdir()
    paths = [str(make_photo(folder / f"{i:03d}.png", size=(64, 48), seed=i)) for i in range(199)]
    odd = os.fsdecode(bytes(folder) + b"/caf\xe9-\xff.png")  # not UTF-8
    make_photo(Path(odd), size=(64, 48), seed=7)
    paths.insert(3, odd)

    gate = threading.Event()
    original = GalleryThumbnails._decode

    def gated(self, *args):
        gate.wait(30)
        return original(self, *args)

    monkeypatch.setattr(GalleryThumbnails, "_decode", gated)
    thumbs = GalleryThumbnails(tmp_path / "cache", workers=2)
    image_class = prepare("unicode")

    class GridApp(App[None]):
        CSS_PATH = Path(__file__).parents[1] / "clipseek" / "tui" / "app.tcss"

        def compose(self):
            yield GalleryGrid(thumbs, image_class, id="gallery")

        def on_mount(self):
            grid = self.query_one(GalleryGrid)
            grid.show_results(_results(paths))
            grid.focus()

    app = GridApp()
    async with app.run_test(size=(80, 30)) as pilot:
        grid = app.query_one(GalleryGrid)
        await wait_until_async(lambda: grid.cells and all(c.result for c in grid.cells))
        assert (grid.columns, grid.rows) == (4, 3)
        placeholders = [str(c.query_one(".gallery-placeholder").render()) for c in grid.cells]
        assert set(placeholders) == {"…"} and not any(c.showing_image for c in grid.cells)
        for _ in range(20):
            await pilot.press("pagedown")
        await pilot.press("end")
        assert grid.index == 199 and grid.top_row == 50 - 3
        assert thumbs.decoded == 0
        await pilot.press("home")
        gate.set()
        await wait_until_async(lambda: grid.complete)
        await pilot.pause()
        assert all(c.showing_image for c in grid.cells)
        # Only the screens wanted last (and the queue ahead of them) were decoded.
        assert thumbs.decoded < 100
        caption = str(grid.cells[3].query_one(".gallery-caption").render())
        assert "caf\\xe9-\\" in caption  # escaped for display, not mangled
    thumbs.close()


# --------------------------------------------------------------------------- snapshots


@pytest.mark.slow  # several seconds of CPU
@pytest.mark.parametrize("renderer", ["halfcell", "unicode"])
def test_snapshot_grid(snap_compare, at_home, loaded_tiny_model, renderer):
    app = make_app(grid_settings(at_home), loaded_tiny_model, preview=renderer)

    async def run_before(pilot) -> None:
        await grid_search(pilot, "a sunny beach", top_k=12)
        await pilot.press("right", "down")
        no_blink(pilot)
        await pilot.pause()

    assert snap_compare(app, terminal_size=(110, 32), run_before=run_before)
