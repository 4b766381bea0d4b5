"""Gallery view: time from Enter to a full first screen of thumbnails.

Fifty 12-megapixel JPEGs (``clipseek.testing.write_photo_corpus``) are indexed with
the tiny test model; the app runs headless (Pilot) in the grid view, and each sample
types a query, presses Enter and waits until every cell on screen holds its
thumbnail. Three cases:

* cold: an empty thumbnail cache (new app, new cache folder), so every picture on
  screen is decoded;
* warm: a new app over the disk cache the cold run left (a second session);
* hot: the same query again in the same app (memory cache).

The baseline, measured in the same run, is decoding the same files once at full
size with Pillow (``Image.open(p).load()``), one after the other: for all 50 files,
and for just the ones a first screen shows. The files are in the OS page cache
in every case (the corpus was just written or read), so this measures decoding,
not the disk.

    python benchmarks/bench_gallery.py            # 160×48 terminal, 3 samples each
    python benchmarks/bench_gallery.py --quick    # 1 sample each
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

from _common import cache_root, header, median, temp_dir


def decode_once(paths: list[Path]) -> float:
    from PIL import Image

    start = time.perf_counter()
    for path in paths:
        with Image.open(path) as im:
            im.load()
    return time.perf_counter() - start


async def first_screen(
    app_factory, query: str, top_k: int, size: tuple[int, int], repeat: int = 1
) -> tuple[list[float], list[float], int]:
    """Open an app, run ``query`` ``repeat`` times; seconds from Enter to a full screen."""
    from clipseek.tui.widgets.gallery import GalleryGrid

    app = app_factory()
    times: list[float] = []
    answers: list[float] = []
    shown = 0
    async with app.run_test(size=size) as pilot:
        while not app.model_ready:
            await asyncio.sleep(0.01)
        screen = app.search_screen
        grid = screen.query_one(GalleryGrid)
        count = screen.query_one("#top-k")
        count.value = str(top_k)
        count.commit()
        await pilot.pause()
        for sample in range(repeat):
            box = screen.query_one("#query")
            box.focus()
            box.value = query
            token = screen._token
            old = screen.response
            start = time.perf_counter()
            await pilot.press("enter")
            # A new answer: compared by identity (the same query answers equal).
            while screen._token <= token or screen.response is None or screen.response is old:
                await asyncio.sleep(0.002)
            answers.append(time.perf_counter() - start)
            while not grid.complete:
                await asyncio.sleep(0.002)
            times.append(time.perf_counter() - start)
            shown = sum(1 for c in grid.cells if c.result is not None)
            assert all(c.showing_image for c in grid.cells if c.result is not None)
            # Let the look-ahead (the next screenful) finish before the next sample.
            while sample + 1 < repeat and screen.gallery_thumbnails.busy:
                await asyncio.sleep(0.01)
    print(
        f"#   Enter→answer {', '.join(f'{a:.3f}' for a in answers)} s; "
        f"Enter→full screen {', '.join(f'{t:.3f}' for t in times)} s",
        flush=True,
    )
    return times, answers, shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one sample of each")
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=48)
    args = parser.parse_args()
    samples = 1 if args.quick else args.samples

    header("gallery: Enter to a full first screen of thumbnails")
    from clipseek.testing import build_tiny_model, write_photo_corpus

    photos = write_photo_corpus(cache_root() / "photos-12mp", args.count)
    print(f"# corpus: {len(photos)} JPEGs of 4000×3000 (12 MP)", flush=True)

    with temp_dir("gallery-") as tmp:
        home = tmp / "home"
        os.environ["HOME"] = str(home)
        os.environ["XDG_CACHE_HOME"] = str(home / ".cache")
        os.environ["CLIPSEEK_CONFIG"] = str(home / "config.toml")
        from textual_image._terminal import CellSize, get_cell_size

        get_cell_size._result = CellSize(10, 20)  # type: ignore[attr-defined]

        from clipseek.config import Settings, cache_dir
        from clipseek.engine import Engine
        from clipseek.models import load_model, resolve_model
        from clipseek.tui.app import ClipseekApp

        # Kept between runs (the index is incremental: a second run finds nothing to do).
        model_dir = cache_root() / "gallery-tiny-clip"
        if not (model_dir / "open_clip_config.json").exists():
            build_tiny_model(model_dir)
        model = load_model(resolve_model(f"local-dir:{model_dir}"), "cpu", "fp32")
        settings = Settings(
            db=cache_root() / f"gallery-index-{args.count}",
            model=f"local-dir:{model_dir}",
            device="cpu",
            precision="fp32",
            view="grid",
            sources={"model": "flag"},
        )
        engine = Engine(settings, model_loader=lambda *_: model)
        engine.index([photos[0].parent])

        def app_factory():
            engine = Engine(replace(settings), model_loader=lambda *_: model)
            return ClipseekApp(engine=engine, preview="halfcell", clock=lambda: 0.0)

        size = (args.width, args.height)
        query = "a photo"
        top = engine.search(query, args.count).results
        assert len(top) == args.count, len(top)
        thumbs = cache_dir() / "thumbnails"

        cold, warm, hot, base_all, base_screen = [], [], [], [], []
        # The gallery's own part: from the search's answer to a full screen.
        cold_t, warm_t, hot_t = [], [], []
        shown = 0
        for _ in range(samples):
            shutil.rmtree(thumbs, ignore_errors=True)
            n = args.count
            times, answers, shown = asyncio.run(first_screen(app_factory, query, n, size))
            cold += times
            cold_t.append(times[0] - answers[0])
            times, answers, _ = asyncio.run(first_screen(app_factory, query, n, size, repeat=2))
            warm.append(times[0])
            hot.append(times[1])
            warm_t.append(times[0] - answers[0])
            hot_t.append(times[1] - answers[1])
            base_all.append(decode_once(photos))
            base_screen.append(decode_once([Path(r.path) for r in top[:shown]]))
            print(
                f"#   decode once: all {base_all[-1]:.3f} s, on screen {base_screen[-1]:.3f} s",
                flush=True,
            )

        on_disk = sum(f.stat().st_size for f in thumbs.rglob("*.jpg"))
        print(f"# terminal {size[0]}×{size[1]}, half-cell renderer, {shown} cells on screen")
        print(f"# thumbnail disk cache after the runs: {on_disk / 1e6:.1f} MB")
        rows = [
            ("decode all 50 once (baseline)", median(base_all)),
            (f"decode the {shown} on screen once", median(base_screen)),
            ("Enter→full screen, cold cache", median(cold)),
            ("Enter→full screen, warm (disk) cache", median(warm)),
            ("Enter→full screen, hot (memory) cache", median(hot)),
            ("  answer→full screen, cold", median(cold_t)),
            ("  answer→full screen, warm", median(warm_t)),
            ("  answer→full screen, hot", median(hot_t)),
        ]
        b = median(base_all)
        s = median(base_screen)
        print(f"{'case':<40} {'seconds':>8} {'÷ all 50':>9} {'÷ on screen':>12}")
        for name, value in rows:
            print(f"{name:<40} {value:8.3f} {value / b:9.3f} {value / s:12.3f}")


if __name__ == "__main__":
    main()
