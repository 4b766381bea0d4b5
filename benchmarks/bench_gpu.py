"""GPU indexing, end to end and against its ceilings, in one run of under five minutes.

Prints, all measured in the same run on the same machine:

* the model alone (ViT-B/32 stand-in, fp16 on CUDA) at several batch sizes, both from
  ready device tensors and through ``encode_prepared`` (uint8 host batch → pinned → card);
* the decode ceiling: clipseek's own per-file work (fingerprint, draft decode, resize,
  crop) on every core, with threads and with decoder processes (shared memory);
* the Chroma write ceiling: ``ImageIndex.upsert`` of 512-d vectors with real metadata;
* ``clipseek index`` end to end (a subprocess, fresh database) on generated 640×480 and
  12 MP JPEGs, each at two corpus sizes so start-up cancels out, with GPU utilisation
  sampled by nvidia-smi;
* start-up: process start to the first written batch;
* that a one-shot text query leaves CUDA uninitialised.

    python benchmarks/bench_gpu.py                   # on the GPU machine (< 5 min)
    python benchmarks/bench_gpu.py --quick --device cpu   # a smoke run anywhere

The per-file work, the decoder processes and the runs all go through the indexer's own
functions (``decode_file``, ``ImagePrep``, ``SharedDecoder``, ``clipseek index``), so a
change there that breaks this script fails ``tests/test_benchmarks.py``, which runs
``--quick --device cpu`` on the test model. The exit status is 1 when any section failed.

Every copy of a corpus image gets unique trailing bytes, so content reuse cannot kick in.
``--json PATH`` also writes every figure as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, cache_root, header, use_standin_cache

MODEL = "ViT-B/32"  # --model changes it (the test runs the tiny test model)
BACKEND = "auto"  # --backend: what `clipseek index` is given
RESULTS: dict[str, Any] = {}


def say(line: str) -> None:
    print(line, flush=True)


def section(name: str, fn: Callable[[], None]) -> None:
    """Run one part; a failure is printed and the rest still runs."""
    say(f"\n## {name}")
    start = time.perf_counter()
    try:
        fn()
    except Exception as exc:  # a benchmark reports what broke and goes on
        import traceback

        traceback.print_exc()
        RESULTS.setdefault("errors", []).append(f"{name}: {exc!r}")
    say(f"({name}: {time.perf_counter() - start:.1f} s)")


# --------------------------------------------------------------------------- corpora


def _make_base(job: tuple[str, int, int, int]) -> None:
    from clipseek.testing import photo_like

    path, width, height, seed = job
    if not os.path.exists(path):
        photo_like((width, height), seed=seed).save(path + ".part", "JPEG", quality=90)
        os.replace(path + ".part", path)


def make_corpus(name: str, size: tuple[int, int], count: int, bases: int, workers: int) -> Path:
    """``count`` unique JPEGs made from ``bases`` generated photos (unique trailing bytes:
    decoders ignore data after the JPEG end marker, the content fingerprint does not)."""
    from concurrent.futures import ProcessPoolExecutor

    base_dir = cache_root() / f"gpu-base-{name}"
    base_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(str(base_dir / f"{i:03d}.jpg"), size[0], size[1], 1000 + i) for i in range(bases)]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_make_base, jobs))
    blobs = [Path(j[0]).read_bytes() for j in jobs]
    folder = cache_root() / f"gpu-corpus-{name}-{count}"
    if folder.exists() and len(list(folder.iterdir())) == count:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i in range(count):
        sub = folder / f"d{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        (sub / f"{name}-{i:06d}.jpg").write_bytes(
            blobs[i % len(blobs)] + b"\0clipseek-bench-copy-%08d" % i
        )
    return folder


def files_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.jpg"))


# --------------------------------------------------------------------------- ceilings


def file_infos(folder: Path, limit: int) -> list[Any]:
    """The first ``limit`` files under ``folder`` as the indexer's scanner records them."""
    from clipseek.indexing.scanner import scan

    return sorted(scan([str(folder)]), key=lambda info: info.path)[:limit]


def decode_ceiling(infos: list[Any], cfg: Any, workers: int, mode: str) -> float:
    """Images/s of clipseek's per-file decode work alone, on ``workers`` threads or
    processes (processes: the indexer's own SharedDecoder, shared memory included)."""
    from clipseek.indexing.decoders import ImagePrep, SharedDecoder
    from clipseek.indexing.options import IndexOptions
    from clipseek.indexing.pipeline import decode_file

    prep = ImagePrep(cfg)
    max_mp = IndexOptions().max_megapixels
    if mode == "threads":
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            start = time.perf_counter()
            list(pool.map(lambda i: decode_file(i, prep, None, max_mp), infos))
            return len(infos) / (time.perf_counter() - start)
    chunk = 16
    decoder = SharedDecoder(workers, cfg, slots=workers * chunk * 4, max_megapixels=max_mp)
    try:
        # Start the processes (spawn + imports) before timing, as the indexer overlaps it.
        slots, fut = decoder.submit(infos[:1])
        for decoded in fut.result():
            if decoded.reason is not None:
                raise RuntimeError(f"{infos[0].path}: {decoded.reason}")
        decoder.release(slots)
        start = time.perf_counter()
        inflight: list[tuple[list[int], Any]] = []
        position = 0
        while position < len(infos) or inflight:
            while position < len(infos) and decoder.free >= chunk:
                part = infos[position : position + chunk]
                position += len(part)
                inflight.append(decoder.submit(part))
            slots, fut = inflight.pop(0)
            failed = [d.reason for d in fut.result() if d.reason is not None]
            if failed:
                raise RuntimeError(f"decoder processes failed: {failed[:3]}")
            decoder.release(slots)
        return len(infos) / (time.perf_counter() - start)
    finally:
        decoder.close()


def chroma_ceiling(count: int, batch: int, tmp: Path) -> float:
    import numpy as np

    from clipseek.store import Record, Store

    store = Store(str(tmp / f"chroma-{batch}"))
    index = store.create_index("bench:chroma", "bench", "bench-chroma", 512)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((count, 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    records = [
        Record(
            f"/photos/2024/d{i // 1000:03d}/IMG_{i:06d}.jpg",
            vectors[i],
            3_000_000 + i,
            1_700_000_000_000_000_000 + i,
            4000,
            3000,
            extra={"content_hash": f"{i:064x}"},
        )
        for i in range(count)
    ]
    start = time.perf_counter()
    for s in range(0, count, batch):
        index.upsert(records[s : s + batch])
    rate = count / (time.perf_counter() - start)
    store.close()
    return rate


# --------------------------------------------------------------------------- model only


def load_bench_model(device: str) -> Any:
    """The model as ``clipseek index`` loads it on a GPU (torch, precision auto)."""
    from clipseek.models import load_model, resolve_model

    start = time.perf_counter()
    model = load_model(resolve_model(MODEL), device=device, precision="auto")
    say(f"model load ({model.device}, {model.precision}): {time.perf_counter() - start:.2f} s")
    RESULTS["model_load_s"] = time.perf_counter() - start
    return model


def model_only(model: Any, batches: list[int], seconds: float = 1.5) -> None:
    import numpy as np
    import torch

    height, width = model.image_size
    rng = np.random.default_rng(0)
    sync = torch.cuda.synchronize if model.device.startswith("cuda") else (lambda: None)
    for batch in batches:
        items = list(rng.integers(0, 255, (batch, height, width, 3), dtype=np.uint8))
        model.encode_prepared(items)  # warm-up (and the lazy move to the card)
        sync()
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            model.encode_prepared(items)
            n += batch
        e2e = n / (time.perf_counter() - start)
        ready = model.batch_tensor(items).to(model.device, dtype=model._dtype)
        with torch.inference_mode():
            model._model.encode_image(ready)
            sync()
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                model._model.encode_image(ready)
                n += batch
            sync()
        compute = n / (time.perf_counter() - start)
        say(
            f"batch {batch:4d}: encode_prepared (uint8 host batch) {e2e:8.0f} img/s | "
            f"model on ready device tensors {compute:8.0f} img/s"
        )
        RESULTS.setdefault("model_only", {})[batch] = {"encode_prepared": e2e, "ready": compute}


# --------------------------------------------------------------------------- end to end


class GpuSampler:
    """nvidia-smi utilisation samples every 100 ms while a run lasts."""

    def __init__(self) -> None:
        self.samples: list[int] = []
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        if shutil.which("nvidia-smi"):
            self._proc = subprocess.Popen(
                [
                    "nvidia-smi",
                    "--query-gpu=utilization.gpu",
                    "--format=csv,noheader,nounits",
                    "-lms",
                    "100",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            value = line.strip().split(",")[0]
            if value.isdigit():
                self.samples.append(int(value))

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(5)

    def summary(self) -> str:
        if not self.samples:
            return "no nvidia-smi"
        busy = [s for s in self.samples if s > 0]
        mean = sum(self.samples) / len(self.samples)
        mean_busy = sum(busy) / len(busy) if busy else 0.0
        return f"GPU util mean {mean:.0f}% (while busy {mean_busy:.0f}%, max {max(self.samples)}%)"


def run_index(folder: Path, db: Path, device: str, env_extra: dict[str, str] | None = None) -> dict:
    env = {**os.environ, **(env_extra or {})}
    cmd = [sys.executable, "-m", "clipseek", "index", str(folder), "--db", str(db)]
    cmd += ["--model", MODEL, "--device", device, "--backend", BACKEND]
    with GpuSampler() as sampler:
        start = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"clipseek index failed ({out.returncode}): {out.stderr[-2000:]}")
    return {"seconds": seconds, "gpu": sampler.summary(), "stdout": out.stdout.strip()[-300:]}


def end_to_end(
    name: str,
    small: Path,
    large: Path,
    n_small: int,
    n_large: int,
    device: str,
    tmp: Path,
    env_extra: dict[str, str] | None = None,
    label: str = "",
) -> float:
    a = run_index(small, tmp / f"db-{name}{label}-small", device, env_extra)
    b = run_index(large, tmp / f"db-{name}{label}-large", device, env_extra)
    # The difference cancels start-up; on runs too short for that (--quick) it is noise.
    extra = b["seconds"] - a["seconds"]
    rate = (n_large - n_small) / extra if extra > 0 else 0.0
    say(
        f"{name}{label}: {n_small} files {a['seconds']:.1f} s, "
        f"{n_large} files {b['seconds']:.1f} s "
        f"-> {rate:,.0f} img/s steady ({n_large / b['seconds']:,.0f} img/s incl. start-up); "
        f"{b['gpu']}"
    )
    say(f"   clipseek said: {b['stdout']}")
    RESULTS.setdefault("end_to_end", {})[name + label] = {
        "small": [n_small, a["seconds"]],
        "large": [n_large, b["seconds"]],
        "steady_img_s": rate,
        "gpu": b["gpu"],
    }
    return rate


_DRIVER = r"""
import json, os, sys, time
t0 = float(os.environ["BENCH_T0"])
marks = {"python_up": time.time() - t0}
from clipseek.config import load_settings
from clipseek.engine import Engine
from clipseek.search.query import parse_query
settings = load_settings({"db": sys.argv[2], "model": sys.argv[5], "device": sys.argv[3]})
engine = Engine(settings, backend=sys.argv[6])
if sys.argv[1] == "index":
    def on(event):
        name = type(event).__name__
        marks.setdefault(name, time.time() - t0)
    engine.index([sys.argv[4]], on_event=on)
else:
    start = time.time()
    response = engine.search(parse_query(["a dog on the beach"]), 5)
    marks["query_s"] = time.time() - start
    marks["results"] = len(response.results)
marks["torch_imported"] = "torch" in sys.modules
if "torch" in sys.modules:
    import torch
    marks["cuda_initialized"] = bool(torch.cuda.is_initialized())
print("MARKS " + json.dumps(marks))
"""


def driver(args: list[str]) -> dict[str, Any]:
    env = {**os.environ, "BENCH_T0": repr(time.time())}
    out = subprocess.run(
        [sys.executable, "-c", _DRIVER, *args], capture_output=True, text=True, env=env, timeout=300
    )
    lines = [x for x in out.stdout.splitlines() if x.startswith("MARKS ")]
    if not lines:
        raise RuntimeError(out.stdout[-1000:] + out.stderr[-2000:])
    return json.loads(lines[-1][6:])


# --------------------------------------------------------------------------- main


def main() -> int:
    global MODEL, BACKEND
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--small", type=int, default=3000, help="640×480 JPEGs, small run")
    parser.add_argument("--large", type=int, default=12000, help="640×480 JPEGs, large run")
    parser.add_argument("--mp-small", type=int, default=300, help="12 MP JPEGs, small run")
    parser.add_argument("--mp-large", type=int, default=1200, help="12 MP JPEGs, large run")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--model", default=MODEL, help="default: the ViT-B/32 stand-in")
    parser.add_argument("--backend", default=BACKEND, choices=("auto", "torch", "onnx"))
    parser.add_argument(
        "--only", default="decode,chroma,e2e,startup,model", help="comma-separated sections"
    )
    args = parser.parse_args()
    MODEL, BACKEND = args.model, args.backend
    if args.quick:
        args.small, args.large, args.mp_small, args.mp_large = 16, 32, 2, 4
    only = set(args.only.split(","))
    header("GPU indexing: end to end against the decode, Chroma and model ceilings")
    if MODEL == "ViT-B/32":
        use_standin_cache()
    import torch

    from clipseek.models import physical_cores, resolve_device

    device = resolve_device(args.device)
    cores = physical_cores()
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "none"
    say(f"# torch {torch.__version__}, device {device} ({gpu}), {cores} cores")
    RESULTS["machine"] = {"device": device, "gpu": gpu, "cores": cores, "torch": torch.__version__}
    tmp = cache_root() / "gpu-run"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    corpora: dict[str, tuple[Path, Path]] = {}

    def build() -> None:
        bases = 2 if args.quick else 64
        for name, size, small, large in (
            ("640x480", (640, 480), args.small, args.large),
            ("12MP", (4000, 3000), args.mp_small, args.mp_large),
        ):
            start = time.perf_counter()
            corpora[name] = (
                make_corpus(name, size, small, bases, cores),
                make_corpus(name, size, large, bases, cores),
            )
            say(f"{name}: {small} + {large} files in {time.perf_counter() - start:.1f} s")

    section("corpora", build)
    # The model's own preprocessing, as the decoders get it from the indexer.
    model = load_bench_model(device)
    cfg = model.preprocess_cfg
    if BACKEND == "onnx" and device == "cpu":
        from clipseek.models import load_model
        from clipseek.models.export import export_model, find_export

        if find_export(model.spec) is None:  # once, here, rather than in the first run
            export_model(load_model(model.spec, device="cpu", precision="fp32"))
    ceilings: dict[str, float] = {}

    def decode() -> None:
        for name, (_small, large) in corpora.items():
            files = file_infos(large, 4000 if name == "640x480" else 600)
            for mode in ("threads", "processes"):
                rate = decode_ceiling(files, cfg, cores, mode)
                say(f"decode {name}, {cores} {mode}: {rate:,.0f} img/s ({len(files)} files)")
                RESULTS.setdefault("decode", {})[f"{name}/{mode}"] = rate
                ceilings[name] = max(ceilings.get(name, 0.0), rate)

    def chroma() -> None:
        count = 500 if args.quick else 20000
        for batch in (256, 2048):
            rate = chroma_ceiling(count, batch, tmp)
            say(f"chroma upsert {count} x 512-d, batch {batch}: {rate:,.0f} vectors/s")
            RESULTS.setdefault("chroma", {})[batch] = rate
            ceilings["chroma"] = max(ceilings.get("chroma", 0.0), rate)

    rates: dict[str, float] = {}

    def e2e() -> None:
        for name, (small, large) in corpora.items():
            n_small, n_large = len(files_of(small)), len(files_of(large))
            rates[name] = end_to_end(name, small, large, n_small, n_large, device, tmp)
            if args.quick:  # one pair of runs shows the code works; each costs an import
                break
        if args.quick:
            return
        small, large = corpora["640x480"]
        end_to_end(
            "640x480",
            small,
            large,
            len(files_of(small)),
            len(files_of(large)),
            device,
            tmp,
            {"CLIPSEEK_DECODE": "threads"},
            " (decoder threads)",
        )

    def startup() -> None:
        small, _ = corpora["640x480"]
        db = str(tmp / "db-startup")
        marks = driver(["index", db, device, str(small), MODEL, BACKEND])
        say("start-up (s since process start): " + json.dumps(marks))
        RESULTS["startup"] = marks
        q = driver(["query", db, device, "-", MODEL, BACKEND])
        say("one-shot text query: " + json.dumps(q))
        RESULTS["query"] = q

    if "decode" in only:
        section("decode ceiling", decode)
    if "chroma" in only:
        section("chroma write ceiling", chroma)
    if "e2e" in only:
        section("end to end (clipseek index subprocess)", e2e)
    if "startup" in only:
        section("start-up and query", startup)
    if "model" in only:
        section(
            "model only",
            lambda: model_only(
                model, [8] if args.quick else [32, 128, 256, 512], 0.2 if args.quick else 1.5
            ),
        )

    say("\n## goals")
    small_rate = rates.get("640x480", 0.0)
    floor = min(ceilings.get("640x480", 0.0), ceilings.get("chroma", 0.0))
    say(
        f"640x480: {small_rate:,.0f} img/s (goal >= 2,500); "
        f"{small_rate / max(floor, 1e-9):.0%} of min(decode {ceilings.get('640x480', 0):,.0f}, "
        f"chroma {ceilings.get('chroma', 0):,.0f}) (goal >= 70%)"
    )
    big = rates.get("12MP", 0.0)
    say(
        f"12 MP: {big:,.0f} img/s, {big / max(ceilings.get('12MP', 0.0), 1e-9):.0%} of the decode "
        f"ceiling {ceilings.get('12MP', 0):,.0f} (goal >= 90%)"
    )
    query = RESULTS.get("query", {})
    say(f"one-shot text query initialised CUDA: {query.get('cuda_initialized')}")
    RESULTS["ceilings"] = ceilings
    if args.json:
        args.json.write_text(json.dumps(RESULTS, indent=1, default=str))
    if os.environ.get("CLIPSEEK_BENCH_KEEP") != "1":
        shutil.rmtree(tmp, ignore_errors=True)
    errors = RESULTS.get("errors", [])
    if errors:
        say(f"\n{len(errors)} section(s) failed: " + "; ".join(errors))
    return 1 if errors else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    sys.exit(main())
