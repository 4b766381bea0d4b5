"""What each CPU runtime costs to start and how fast it then embeds, in fresh processes.

The figures ``--backend auto`` weighs per run (issue 26): torch (import torch and open_clip,
load the model in its auto precision) against ONNX Runtime (import, build the image
session), then each one's image rate (batch 32, best of 3 after a warm-up) and peak RSS.
Fresh processes, interleaved (torch first, then ONNX first, ...), medians reported; from
them, the run size above which torch finishes sooner. The model is the ViT-B/32 stand-in.

    python benchmarks/bench_runtime_start.py --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, cache_root, compile_sources, header, median, use_standin_cache

_CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
which = sys.argv[1]
import numpy as np
from clipseek.models import resolve_model
spec = resolve_model("ViT-B/32")
if which == "torch":
    from clipseek.models.hardware import keep_triton_out
    keep_triton_out()  # as load_model does
    import torch, open_clip
    t1 = time.perf_counter()
    from clipseek.models import load_model
    model = load_model(spec, device="cpu", precision="auto")
else:
    import onnxruntime
    t1 = time.perf_counter()
    from clipseek.models.onnx_backend import load_onnx_model
    model = load_onnx_model(spec)
    model.warm("image")
t2 = time.perf_counter()
items = list(np.random.default_rng(0).integers(0, 255, (32, 224, 224, 3), dtype=np.uint8))
model.encode_prepared(items[:2])
best = 0.0
for _ in range(3):
    start = time.perf_counter()
    model.encode_prepared(items)
    best = max(best, len(items) / (time.perf_counter() - start))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
print("RESULT " + json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "img_s": best,
      "peak_mb": peak, "precision": model.precision}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    header("CPU runtimes: start-up (imports, load) and image rate, fresh processes")
    use_standin_cache()
    os.environ["XDG_CACHE_HOME"] = str(cache_root() / "xdg-cache")  # the export
    compile_sources(ROOT)
    from clipseek.models import load_model, resolve_model
    from clipseek.models.export import export_model, find_export

    spec = resolve_model("ViT-B/32")
    if find_export(spec) is None:
        print("  exporting the stand-in to ONNX (once; not timed)…", flush=True)
        export_model(load_model(spec, device="cpu", precision="fp32"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs: dict[str, list[dict]] = {"torch": [], "onnx": []}
    for r in range(args.repeat):
        for which in ("torch", "onnx") if r % 2 == 0 else ("onnx", "torch"):
            out = subprocess.run(
                [sys.executable, "-c", _CHILD, which], capture_output=True, text=True, env=env
            )
            lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
            if not lines:
                raise SystemExit(out.stdout[-1000:] + out.stderr[-2000:])
            result = json.loads(lines[-1][7:])
            runs[which].append(result)
            shown = {k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()}
            print(f"  {which}: {shown} (load average {os.getloadavg()[0]:.1f})", flush=True)
    med = {
        w: {k: median([x[k] for x in v]) for k in ("import_s", "load_s", "img_s", "peak_mb")}
        for w, v in runs.items()
    }
    print("\n| runtime | import s | load / session s | img/s (batch 32) | peak RSS MB |")
    print("|---|---|---|---|---|")
    for w, m in med.items():
        label = f"{w} ({runs[w][0]['precision']})"
        print(
            f"| {label} | {m['import_s']:.2f} | {m['load_s']:.2f} | {m['img_s']:.1f} "
            f"| {m['peak_mb']:,.0f} |"
        )
    t, o = med["torch"], med["onnx"]
    extra_start = (t["import_s"] + t["load_s"]) - (o["import_s"] + o["load_s"])
    saved_per_image = 1 / o["img_s"] - 1 / t["img_s"]
    if saved_per_image > 0:
        print(f"\ntorch finishes sooner from about {extra_start / saved_per_image:.0f} images")
    else:
        print("\nONNX Runtime embeds faster here: torch never pays off")
    print(f"# load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
