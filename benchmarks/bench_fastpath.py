"""Benchmark 9: the ONNX fast path against torch, every figure in one run.

With the ViT-B/32 stand-in (random weights of the real shape, fp16 checkpoint):

1. export: wall time and disk of ``export_model`` (both towers, fp32);
2. cold ``clipseek query "text" --json``: median of --repeat fresh processes through the
   ONNX export and through torch (no export: ``CLIPSEEK_NO_EXPORT=1``, an empty cache),
   interleaved A/B, on an index of --images records; each run's peak RSS (ru_maxrss);
   the same for a cold ``--image`` query and for ``python -c pass`` (the floor);
   (a cold query reads the index files directly: chromadb is not imported);
2b. the app (headless): launch to the first answer of a query typed at once, reading the
   files directly (as shipped) against Chroma's snapshot, interleaved;
3. at rest: RSS of ``clipseek serve`` once it answers, and of the app (headless) after
   its model is ready and one query ran, through ONNX and through torch;
4. the image tower on this CPU: images/s of ONNX Runtime fp32, int8 (dynamic
   quantisation) and torch fp32 (and bf16 where the CPU has it), same batch, same run;
5. int8 agreement: cosine of int8 vs fp32 image vectors (stand-in), and the shipped
   shapes model's colour+shape top-1 rate with fp32 and int8 image vectors.

The index holds random unit vectors under empty files (what a query costs does not
depend on where its vectors came from), so building it takes seconds, not an hour.

    python benchmarks/bench_fastpath.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    ROOT,
    cache_root,
    compile_sources,
    header,
    median,
    use_standin_cache,
    wall_and_peak,
)

QUERY = "a dog playing on a beach"


def _build_index(db: Path, count: int, photos: Path) -> None:
    """Random unit vectors under empty files: a query drops results whose file is gone, so
    the files must exist, or every query would scan the whole index for survivors."""
    import numpy as np

    from clipseek.models import resolve_model
    from clipseek.store import Record, Store

    spec = resolve_model("ViT-B/32")
    store = Store(str(db))
    index = store.create_index(spec.key, spec.name, spec.collection_slug, 512)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((count, 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    paths = [photos / f"{i // 500:03d}" / f"img_{i:06d}.jpg" for i in range(count)]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    records = [
        Record(str(path), vectors[i], 1000 + i, 10**18 + i, 640, 480)
        for i, path in enumerate(paths)
    ]
    for start in range(0, count, 1000):
        index.upsert(records[start : start + 1000])
    index.add_roots([str(photos)])
    store.close()


def _serve_rss(env: dict[str, str], db: Path) -> tuple[float, float]:
    """Seconds until ``clipseek serve`` answered its first search, and its RSS (MB) then."""
    import urllib.error
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [sys.executable, "-m", "clipseek", "serve", "--port", str(port), "--db", str(db)]
    start = time.perf_counter()
    proc = subprocess.Popen(
        [*args, "-m", "ViT-B/32"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"serve exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=60)
                break
            except urllib.error.HTTPError:
                break  # up, whatever it says about itself
            except OSError:
                time.sleep(0.2)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/search",
            data=json.dumps({"query": QUERY, "top_k": 5}).encode(),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=600).read()
        ready = time.perf_counter() - start
        time.sleep(1.0)
        rss = _proc_rss(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return ready, rss


def _proc_rss(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


APP_CHILD = r"""
import asyncio, json, os, sys, time
from clipseek.config import load_settings
from clipseek.tui.app import ClipseekApp

async def main():
    settings = load_settings({"model": "ViT-B/32", "db": sys.argv[1]})
    app = ClipseekApp(settings=settings, preview="none")
    start = time.perf_counter()
    async with app.run_test() as pilot:
        while app.engine is None or not app.engine.model_loaded:
            await asyncio.sleep(0.05)
        loaded = time.perf_counter() - start
        app.engine.search("a dog on a beach", 5)
        await asyncio.sleep(1.0)
        with open("/proc/self/status") as fh:
            rss = next(int(l.split()[1]) for l in fh if l.startswith("VmRSS:")) / 1024
        print(json.dumps({"model_ready_s": loaded, "rss_mb": rss,
                          "backend": app.engine.model().backend,
                          "torch": "torch" in sys.modules}))
        app.exit()

asyncio.run(main())
"""


def _app_rss(env: dict[str, str], db: Path) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", APP_CHILD, str(db)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode != 0:
        return {"error": out.stderr[-500:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


FIRST_ANSWER_CHILD = r"""
import asyncio, json, sys, time
LAUNCHED = float(sys.argv[3])  # the parent's clock just before it started this process
from clipseek.gc_pause import start_without_collections
start_without_collections()  # as the console script starts the app
from clipseek.config import load_settings
from clipseek.tui.app import ClipseekApp
from clipseek.tui.screens import search as search_screen

answered = []
real = search_screen.SearchScreen.on_search_done
def on_search_done(self, message):
    real(self, message)
    answered.append(time.time() - LAUNCHED)
search_screen.SearchScreen.on_search_done = on_search_done

async def main():
    settings = load_settings({"model": "ViT-B/32", "db": sys.argv[1]})
    app = ClipseekApp(settings=settings, preview="none")
    if sys.argv[2] == "snapshot":  # as before: Chroma's snapshot, prepacked sessions
        from clipseek.engine import Engine
        app.engine = Engine(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.search_screen
        box = screen.query_one("#query")
        box.focus()
        box.value = "a dog on a beach"
        await pilot.press("enter")
        while not answered:
            await asyncio.sleep(0.01)
        print(json.dumps({"first_answer_s": answered[0], "chromadb": "chromadb" in sys.modules}))
        app.exit()

asyncio.run(main())
"""


def _first_answers(env: dict[str, str], db: Path, repeat: int) -> dict[str, list[float]]:
    """Launch → first answer of the app (headless) with a query typed at once, reading
    the files directly (as shipped) and through Chroma's snapshot, interleaved. Timed
    from just before the process starts, so the interpreter's own start counts too."""
    times: dict[str, list[float]] = {"direct": [], "snapshot": []}
    for _ in range(repeat):
        for mode in times:
            out = subprocess.run(
                [sys.executable, "-c", FIRST_ANSWER_CHILD, str(db), mode, repr(time.time())],
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if out.returncode != 0:
                raise SystemExit(out.stderr[-2000:])
            times[mode].append(json.loads(out.stdout.strip().splitlines()[-1])["first_answer_s"])
    return times


OVERLAP_CHILD = r"""
import sys, time
t = time.perf_counter()
from clipseek.config import load_settings
from clipseek.engine import Engine
if sys.argv[2] == "off":
    Engine.warm_model = lambda self, tower="text": None
engine = Engine(load_settings({"model": "ViT-B/32", "db": sys.argv[1]}))
engine.search("a dog on a beach", 5)
assert engine.model().backend == "onnx"
print(time.perf_counter() - t)
"""


def _overlap(env: dict[str, str], db: Path, repeat: int) -> dict[str, float]:
    """A cold text search in-process, with the ONNX session loading on a thread while
    chromadb imports (as shipped) and without (one after the other)."""
    times: dict[str, list[float]] = {"overlapped": [], "sequential": []}
    for _ in range(repeat):
        for name, flag in (("overlapped", "on"), ("sequential", "off")):
            out = subprocess.run(
                [sys.executable, "-c", OVERLAP_CHILD, str(db), flag],
                env=env,
                capture_output=True,
                text=True,
            )
            if out.returncode != 0:
                raise SystemExit(out.stderr[-2000:])
            times[name].append(float(out.stdout.strip().splitlines()[-1]))
    return {name: median(values) for name, values in times.items()}


def _tower_rates(rounds: int) -> dict[str, float]:
    from clipseek.models import cpu_has_native_bf16, load_model, resolve_model
    from clipseek.models.export import ensure_int8, find_export
    from clipseek.models.onnx_backend import OnnxModel
    from clipseek.models.runtime import images_per_second

    spec = resolve_model("ViT-B/32")
    export = find_export(spec)
    assert export is not None
    ensure_int8(export)
    rates: dict[str, float] = {}
    fp32 = OnnxModel(spec, export)
    rates["onnx fp32"] = images_per_second(fp32, 16, rounds)
    int8 = OnnxModel(spec, export, "int8")
    rates["onnx int8"] = images_per_second(int8, 16, rounds)
    del fp32, int8
    torch_fp32 = load_model(spec, device="cpu", precision="fp32")
    rates["torch fp32"] = images_per_second(torch_fp32, 16, rounds)
    del torch_fp32
    if cpu_has_native_bf16():
        torch_bf16 = load_model(spec, device="cpu", precision="bf16")
        rates["torch bf16"] = images_per_second(torch_bf16, 16, rounds)
    return rates


def _int8_agreement() -> dict[str, float]:
    """Cosine int8 vs fp32 (stand-in, photo-like pictures) and the shapes model's top-1."""

    from clipseek.models import load_model, resolve_model
    from clipseek.models.export import ensure_int8, export_model, find_export
    from clipseek.models.onnx_backend import OnnxModel
    from clipseek.testing import (
        COLOURS,
        SHAPES,
        fixture_model_spec,
        generate_dataset,
        noun_phrase,
        photo_like,
    )

    out: dict[str, float] = {}
    spec = resolve_model("ViT-B/32")
    export = find_export(spec)
    assert export is not None
    ensure_int8(export)
    fp32, int8 = OnnxModel(spec, export), OnnxModel(spec, export, "int8")
    images = [photo_like((320, 240), seed=i) for i in range(32)]
    a = fp32.encode_prepared([fp32.prepare(i) for i in images])
    b = int8.encode_prepared([int8.prepare(i) for i in images])
    cos = (a * b).sum(1)
    out["ViT-B/32 stand-in: cosine int8·fp32, min"] = float(cos.min())
    out["ViT-B/32 stand-in: cosine int8·fp32, mean"] = float(cos.mean())

    shapes = resolve_model(fixture_model_spec())
    torch_shapes = load_model(shapes, device="cpu", precision="fp32")
    sexport = find_export(shapes) or export_model(torch_shapes)
    ensure_int8(sexport)
    s32, s8 = OnnxModel(shapes, sexport), OnnxModel(shapes, sexport, "int8")
    folder = cache_root() / "fastpath-scenes"
    if not folder.exists():
        generate_dataset(folder, 2 * len(COLOURS) * len(SHAPES), seed=424242, size=(96, 72))
    from PIL import Image

    paths = sorted(folder.iterdir())
    pics = [Image.open(p).convert("RGB") for p in paths]
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    texts = s32.encode_texts([noun_phrase(c, s) for c, s in pairs]).vectors
    for name, model in (("fp32", s32), ("int8", s8)):
        vecs = model.encode_prepared([model.prepare(p) for p in pics])
        top = (texts @ vecs.T).argmax(1)
        hits = sum(
            tuple(paths[t].name.split("-")[:2]) == pair for t, pair in zip(top, pairs, strict=True)
        )
        out[f"shapes model: colour+shape top-1, {name}"] = hits / len(pairs)
    v32 = s32.encode_prepared([s32.prepare(p) for p in pics])
    v8 = s8.encode_prepared([s8.prepare(p) for p in pics])
    out["shapes model: cosine int8·fp32, min"] = float((v32 * v8).sum(1).min())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 runs, 3000 records")
    parser.add_argument("--repeat", type=int)
    parser.add_argument("--images", type=int)
    parser.add_argument(
        "--skip", default="", help="comma list of: export,cold,first,overlap,rest,tower,int8"
    )
    args = parser.parse_args()
    repeat = args.repeat or (3 if args.quick else 5)
    count = args.images or 3000
    skip = set(filter(None, args.skip.split(",")))
    header("the ONNX fast path against torch (ViT-B/32 stand-in)")
    compile_sources(ROOT)  # every section below times fresh processes
    from clipseek.models import cpu_has_native_bf16

    print(f"native bf16 on this CPU: {cpu_has_native_bf16()}")
    hub = use_standin_cache()
    work = cache_root() / "fastpath"
    onnx_cache, torch_cache = work / "cache-onnx", work / "cache-torch"
    os.environ["XDG_CACHE_HOME"] = str(onnx_cache)
    base_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_CACHE": str(hub),
        "HF_HUB_OFFLINE": "1",
        "CLIPSEEK_CONFIG": str(work / "no-config.toml"),
    }
    base_env.pop("CLIPSEEK_DB", None)
    env_onnx = {**base_env, "XDG_CACHE_HOME": str(onnx_cache)}
    env_torch = {**base_env, "XDG_CACHE_HOME": str(torch_cache), "CLIPSEEK_NO_EXPORT": "1"}
    db, photos = work / f"db-{count}-files", work / f"photos-{count}"
    if not (db / "ready").exists():
        shutil.rmtree(db, ignore_errors=True)
        shutil.rmtree(photos, ignore_errors=True)
        t = time.perf_counter()
        _build_index(db, count, photos)
        (db / "ready").write_text("ok")
        print(f"built an index of {count:,} records in {time.perf_counter() - t:.1f} s")

    from clipseek.models import load_model, resolve_model
    from clipseek.models.export import export_model, find_export

    spec = resolve_model("ViT-B/32")
    if "export" not in skip or find_export(spec) is None:
        model = load_model(spec, device="cpu", precision="fp32")
        for old in (onnx_cache / "clipseek" / "onnx").glob("ViT-B-32*"):
            shutil.rmtree(old)
        t = time.perf_counter()
        export = export_model(model)
        took = time.perf_counter() - t
        del model
        sizes = export.manifest["files"]
        print(
            f"\nexport: {took:.1f} s, {export.disk_bytes() / 1e6:,.0f} MB on disk "
            f"({', '.join(f'{k} {v / 1e6:,.0f} MB' for k, v in sizes.items())})"
        )

    if "cold" not in skip:
        clipseek = [sys.executable, "-m", "clipseek"]
        example = work / "example.jpg"
        if not example.exists():
            from clipseek.testing import photo_like

            photo_like((640, 480), seed=5).save(example, quality=90)
        common = ["--db", str(db), "-m", "ViT-B/32", "--json"]
        cases = [
            ("python -c pass", [sys.executable, "-c", "pass"], base_env),
            ("text query, ONNX", [*clipseek, "query", QUERY, *common], env_onnx),
            ("text query, torch", [*clipseek, "query", QUERY, *common], env_torch),
            ("image query, ONNX", [*clipseek, "query", "--image", str(example), *common], env_onnx),
            (
                "image query, torch",
                [*clipseek, "query", "--image", str(example), *common],
                env_torch,
            ),
        ]
        wall: dict[str, list[float]] = {c[0]: [] for c in cases}
        rss: dict[str, list[float]] = {c[0]: [] for c in cases}
        for _ in range(repeat):
            for name, argv, env in cases:
                w, r, _ = wall_and_peak(argv, env)
                wall[name].append(w)
                rss[name].append(r)
        print(f"\ncold commands on {count:,} records, median of {repeat} fresh processes:\n")
        print("| command | wall s | peak RSS MB |")
        print("|---|---|---|")
        for name, _, _ in cases:
            print(f"| {name} | {median(wall[name]):.2f} | {median(rss[name]):,.0f} |")
        for kind in ("text", "image"):
            o, t = median(wall[f"{kind} query, ONNX"]), median(wall[f"{kind} query, torch"])
            ro, rt = median(rss[f"{kind} query, ONNX"]), median(rss[f"{kind} query, torch"])
            print(f"{kind}: ONNX ÷ torch wall {o / t:.2f}×, peak RSS {ro / rt:.2f}×")

    if "first" not in skip:
        got = _first_answers(env_onnx, db, repeat)
        d, n = median(got["direct"]), median(got["snapshot"])
        print(
            f"\napp (headless), launch to the first answer of a query typed at once, median of "
            f"{repeat}: direct reads {d:.2f} s (range {min(got['direct']):.2f}–"
            f"{max(got['direct']):.2f}), Chroma snapshot {n:.2f} s ({d / n:.2f}×)"
        )

    if "overlap" not in skip:
        got = _overlap(env_onnx, db, repeat)
        print(
            f"\ncold search in-process (imports + open + encode + search), median of {repeat}: "
            f"session loaded beside the chromadb import {got['overlapped']:.2f} s, one after "
            f"the other {got['sequential']:.2f} s "
            f"({got['overlapped'] / got['sequential']:.2f}×)"
        )

    if "rest" not in skip:
        print("\nat rest (after start-up and one query):\n")
        print("| face | runtime | ready s | RSS MB |")
        print("|---|---|---|---|")
        for label, env in (("ONNX", env_onnx), ("torch", env_torch)):
            ready, mb = _serve_rss(env, db)
            print(f"| serve | {label} | {ready:.1f} | {mb:,.0f} |")
        for label, env in (("ONNX", env_onnx), ("torch", env_torch)):
            app = _app_rss(env, db)
            if "error" in app:
                print(f"| app | {label} | failed: {app['error']} | |")
            else:
                print(
                    f"| app | {label} ({app['backend']}) | {app['model_ready_s']:.1f} "
                    f"| {app['rss_mb']:,.0f} |"
                )

    if "tower" not in skip:
        rates = _tower_rates(rounds=3 if args.quick else 6)
        base = rates["torch fp32"]
        print("\nimage tower, batch 16, all cores:\n")
        print("| runtime | images/s | ÷ torch fp32 |")
        print("|---|---|---|")
        for name, rate in rates.items():
            print(f"| {name} | {rate:.1f} | {rate / base:.2f}× |")

    if "int8" not in skip:
        print("\nint8 agreement:\n")
        for name, value in _int8_agreement().items():
            print(f"- {name}: {value:.4f}")


if __name__ == "__main__":
    main()
