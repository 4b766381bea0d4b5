"""Precision: is bf16 faster here, and how far are its embeddings from fp32's?

For the ViT-B/32 stand-in (random weights of the real shape) and the tests' tiny
model: cosine between fp32 and bf16 embeddings of photo-like images and of texts,
and model-only images/s for each precision at 1 and at all torch threads. Also
prints what ``--precision auto`` picks on this machine and why.

    python benchmarks/bench_precision.py --quick
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, median, use_standin_cache

TEXTS = [
    "a dog playing in the park",
    "sunset over the sea",
    "a red car parked in front of an old house",
    "two children building a sandcastle on the beach",
    "snowy mountains under a clear blue sky",
    "a plate of spaghetti",
]


def agreement(name: str, count: int) -> tuple[Any, Any]:
    import numpy as np
    import torch

    from clipseek.models import load_model, resolve_model
    from clipseek.testing import photo_like

    spec = resolve_model(name)
    fp32 = load_model(spec, device="cpu", precision="fp32")
    bf16 = load_model(spec, device="cpu", precision="bf16")
    pictures = [photo_like((320 + 16 * i, 240 + 8 * i), seed=100 + i) for i in range(count)]
    batch = torch.stack([fp32.transform(p) for p in pictures])
    img = (fp32.encode_images(batch) * bf16.encode_images(batch)).sum(axis=1)
    txt = (fp32.encode_texts(TEXTS).vectors * bf16.encode_texts(TEXTS).vectors).sum(axis=1)
    return np.asarray(img), np.asarray(txt)


def speed(name: str, precision: str, threads: int, repeat: int) -> float:
    import torch

    from clipseek.models import load_model, resolve_model, set_torch_threads

    model = load_model(resolve_model(name), device="cpu", precision=precision)
    set_torch_threads(threads)
    x = torch.randn(32, 3, *model.image_size)
    model.encode_images(x)
    model.encode_images(x)
    rates = []
    for _ in range(repeat):
        start = time.perf_counter()
        model.encode_images(x)
        rates.append(32 / (time.perf_counter() - start))
    return median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    count, repeat = (8, 3) if args.quick else (32, 5)
    header("bf16 against fp32: agreement and speed")
    use_standin_cache()
    from clipseek.models import cpu_has_native_bf16, physical_cores, resolve_precision
    from clipseek.testing import build_tiny_model

    cores = physical_cores()
    print(f"native bf16 (avx512_bf16/amx_bf16): {cpu_has_native_bf16()}; ", end="")
    print(f"--precision auto on cpu → {resolve_precision('auto', 'cpu')}")
    tiny = f"local-dir:{build_tiny_model(Path(tempfile.mkdtemp()) / 'tiny')}"
    print()
    print("| model | images | min image cosine | mean | texts | min text cosine | mean |")
    print("|---|---|---|---|---|---|---|")
    for label, name in (("ViT-B/32 stand-in", "ViT-B/32"), ("tests' tiny model", tiny)):
        img, txt = agreement(name, count)
        print(
            f"| {label} | {len(img)} | {img.min():.5f} | {img.mean():.5f} | {len(txt)} "
            f"| {txt.min():.5f} | {txt.mean():.5f} |",
            flush=True,
        )
    print()
    print("| ViT-B/32 model only, batch 32 | 1 thread img/s | " + f"{cores} threads img/s |")
    print("|---|---|---|")
    rows = {}
    for precision in ("fp32", "bf16"):
        rows[precision] = [speed("ViT-B/32", precision, t, repeat) for t in (1, cores)]
        one, all_ = rows[precision]
        print(f"| {precision} | {one:.1f} | {all_:.1f} |", flush=True)
    ratio = max(rows["bf16"]) / max(rows["fp32"])
    print(f"\nbf16 ÷ fp32 (best of each): {ratio:.2f}×")


if __name__ == "__main__":
    main()
