"""JPEG draft decoding: its speed, and its distance to the reference preprocessing.

Reference: decode the full JPEG, then the model's own open_clip transform (bicubic
resize of the short side to 224, centre crop, normalise). clipseek: when the short side is
at least twice the model input, let libjpeg scale the DCT down by 1/2, 1/4 or 1/8
while decoding (``Image.draft``) to the smallest size that still covers the model
input, then the same transform. Printed per source size: decode+preprocess time of
each (and the ratio), the mean and max absolute difference of the model input tensor
(in 0–255 pixel steps), and the cosine between the embeddings (ViT-B/32 stand-in, fp32).

    python benchmarks/bench_draft.py --quick
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cache_root, header, median, use_standin_cache

SIZES = {"12MP": (4000, 3000), "6MP": (3000, 2000), "2MP": (1600, 1200), "0.5MP": (800, 600)}


def reference(path: Path, model: Any) -> Any:
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im.load()
        image = (ImageOps.exif_transpose(im) or im).convert("RGB")
    return model.transform(image)


def clipseek_input(path: Path, model: Any) -> Any:
    from clipseek.photos.imaging import load_for_model

    item, _ = load_for_model(str(path), model.prepare, model.image_size, None)
    return model.batch_tensor([item])[0]


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 images per size instead of 12")
    parser.add_argument("--count", type=int)
    args = parser.parse_args()
    count = args.count or (4 if args.quick else 12)
    header("JPEG draft decoding vs full decoding")
    use_standin_cache()
    from clipseek.models import load_model, resolve_model
    from clipseek.testing import write_photo_corpus

    model = load_model(resolve_model("ViT-B/32"), device="cpu", precision="fp32")
    std = torch.tensor(model.preprocess_cfg.std).view(3, 1, 1)
    print(
        "| source | files | full decode ms | draft ms | speed-up | mean abs diff | max abs diff "
        "| min cosine | mean cosine |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for label, size in SIZES.items():
        folder = cache_root() / f"corpus-draft-{size[0]}x{size[1]}"
        paths = write_photo_corpus(folder, count, size=size, fmt="jpg", seed=11)
        ref_t, fast_t, refs, fasts = [], [], [], []
        for path in paths:
            for _ in range(2):  # second round timed: the file is in the page cache
                start = time.perf_counter()
                a = reference(path, model)
                mid = time.perf_counter()
                b = clipseek_input(path, model)
                end = time.perf_counter()
            ref_t.append(mid - start)
            fast_t.append(end - mid)
            refs.append(a)
            fasts.append(b)
        ref, fast = torch.stack(refs), torch.stack(fasts)
        pixels = (ref - fast).abs() * std * 255  # back to 0–255 pixel steps
        emb_ref = model.encode_images(ref)
        emb_fast = model.encode_images(fast)
        cos = (emb_ref * emb_fast).sum(axis=1)
        r, f = median(ref_t) * 1000, median(fast_t) * 1000
        print(
            f"| {label} {size[0]}×{size[1]} | {count} | {r:.0f} | {f:.0f} | {r / f:.1f}× "
            f"| {pixels.mean():.2f} | {pixels.max():.1f} | {cos.min():.5f} | {cos.mean():.5f} |",
            flush=True,
        )
    print("\nmean/max abs diff: of the model input tensor, in 0–255 pixel steps.")


if __name__ == "__main__":
    main()
