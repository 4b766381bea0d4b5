"""Make the SVG screenshots in screenshots/ from a real run of the app.

It generates sample pictures (coloured shapes on textured backgrounds, plus two
broken files), indexes them with the indexing screen, searches, and saves what
the app shows at each step:

    python scripts/screenshots.py                       # the shipped shapes model, offline
    python scripts/screenshots.py --model ViT-B/32      # any other model

Paths on screen read ``~/Pictures/...`` because the run happens in a temporary
home folder. The default model is the small one clipseek ships for demos
(clipseek/fixtures/shapes-clip), trained on exactly such pictures, so a query
like "a red circle" finds red circles.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_samples(root: Path, count: int) -> list[Path]:
    """Scenes the shipped shapes model was trained on, spread over two folders, plus two
    broken files so the indexing screen has problems to show."""
    from clipseek.testing import generate_dataset

    paths = []
    for folder, n, seed in (("shapes", count - count // 3, 7), ("shapes/more", count // 3, 8)):
        paths += [p for p, _ in generate_dataset(root / folder, n, seed=seed, size=(640, 440))]
    (root / "notes.jpg").write_text("shopping list: milk, eggs\n")  # not an image
    truncated = root / "shapes" / "cut-off.jpg"
    truncated.write_bytes(paths[0].read_bytes()[:2000])
    return paths


class Paced:
    """The model, slowed to a realistic pace per batch, so that the indexing screenshot
    catches a run in progress (a small model on sample images is done in a blink)."""

    def __init__(self, model, delay: float) -> None:
        self._model = model
        self._delay = delay

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def encode_prepared(self, items):
        time.sleep(self._delay)
        return self._model.encode_prepared(items)


async def wait_for(condition, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the app did not get there in time")
        await asyncio.sleep(0.02)


def no_blink(app) -> None:
    from textual.widgets import Input

    for widget in app.screen.query(Input):
        widget.cursor_blink = False


async def shoot(app, pilot, out: Path, name: str) -> None:
    no_blink(app)
    await asyncio.sleep(0.2)
    await pilot.pause()
    app.save_screenshot(filename=f"{name}.svg", path=str(out))
    print(f"saved {out / (name + '.svg')}")


async def run(args: argparse.Namespace, home: Path, out: Path) -> None:
    from clipseek.config import Settings
    from clipseek.engine import Engine
    from clipseek.tui.app import ClipseekApp

    pictures = home / "Pictures"
    make_samples(pictures, args.count)
    model = args.model
    if model is None:
        import shutil

        from clipseek.testing import FIXTURE_MODEL_DIR

        # A copy under the temporary home, so the screen shows ~/models/... not a site path.
        shown = home / "models" / "shapes-clip"
        shutil.copytree(FIXTURE_MODEL_DIR, shown)
        model = f"local-dir:{shown}"
    db = home / ".local" / "share" / "clipseek" / "index"
    settings = Settings(
        db=db,
        model=model,
        device=args.device,
        precision=args.precision,
        batch_size=args.batch_size,
        sources={"model": "flag"},
    )
    size = (args.width, args.height)

    from clipseek.models import load_model

    def loader(spec, device, precision):
        return Paced(load_model(spec, device, precision), args.pace)

    # 1. The empty state: no index yet.
    app = ClipseekApp(engine=Engine(settings, model_loader=loader), preview=args.preview)
    async with app.run_test(size=size) as pilot:
        await wait_for(lambda: app.index_count is not None and app.model_state != "loading")
        await shoot(app, pilot, out, "empty-state")

        # 2. Indexing, caught part-way through.
        await pilot.press("escape", "i")  # leave the query box: i there is a letter
        folder = app.indexing_screen.query_one("#folder")
        folder.value = "~/Pictures"
        await pilot.press("enter")
        await wait_for(
            lambda: (
                app.index_job is not None
                and (
                    app.index_job.done >= app.index_job.to_embed * 0.4 > 0
                    or not app.index_job.running
                )
            )
        )
        await shoot(app, pilot, out, "indexing")
        await wait_for(lambda: not app.index_job.running)
        await wait_for(lambda: (app.index_count or 0) > 0)

        # 3. A search with results, the second one selected.
        await pilot.press("b" if app.index_job.running else "escape")
        query = app.search_screen.query_one("#query")
        query.focus()
        query.value = args.query
        await pilot.press("enter")
        await wait_for(lambda: app.search_screen.response is not None)
        await pilot.press("down")
        pane = app.search_screen.query_one("#preview")
        await wait_for(lambda: pane.showing_image or args.preview == "none")
        await shoot(app, pilot, out, "search")

        # 4. Help.
        await pilot.press("question_mark")
        await shoot(app, pilot, out, "help")

        # 5. The same results as a gallery (g), the fifth one selected.
        await pilot.press("escape")
        await wait_for(lambda: app.screen is app.search_screen)
        top_k = app.search_screen.query_one("#top-k")
        top_k.value = "24"
        top_k.commit()
        await wait_for(lambda: len(app.search_screen.response.results) == 24)
        await pilot.press("g")
        from clipseek.tui.widgets.gallery import GalleryGrid

        grid = app.search_screen.query_one(GalleryGrid)
        await wait_for(lambda: app.search_screen.grid_active)
        await pilot.press("home", "down", "right")
        await wait_for(lambda: grid.complete)
        await shoot(app, pilot, out, "gallery")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model to use (default: the shipped shapes model)")
    parser.add_argument("--out", type=Path, default=REPO / "screenshots")
    parser.add_argument("--query", default="a red circle")
    parser.add_argument("--count", type=int, default=48, help="sample pictures to draw")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument(
        "--pace", type=float, default=0.4, help="seconds added per batch while indexing"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--preview", default="halfcell")
    parser.add_argument("--width", type=int, default=110)
    parser.add_argument("--height", type=int, default=32)
    args = parser.parse_args()
    if args.model and args.model.startswith("local-dir:"):
        folder = Path(args.model.removeprefix("local-dir:")).expanduser().resolve()
        args.model = f"local-dir:{folder}"
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="clipseek-shots-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        os.environ["HOME"] = str(home)  # paths on screen: ~/Pictures/...
        # The gallery key saves the view in the config file, and its thumbnails are cached:
        # both go to the temporary home, never the user's own.
        os.environ["CLIPSEEK_CONFIG"] = str(home / ".config" / "clipseek" / "config.toml")
        os.environ["XDG_CACHE_HOME"] = str(home / ".cache")
        from textual_image._terminal import CellSize, get_cell_size

        get_cell_size._result = CellSize(10, 20)  # type: ignore[attr-defined]
        asyncio.run(run(args, home, args.out.resolve()))


if __name__ == "__main__":
    main()
