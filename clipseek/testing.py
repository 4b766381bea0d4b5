"""Stand-in models for tests, benchmarks and demos on machines without real weights.

Real CLIP weights are hundreds of megabytes from the network; these builders make
models with the right *shape* (so every code path runs) from a seed, offline.
They are part of the package so that tests, benchmarks and the screenshot script
share one implementation.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

TINY_MODEL_CFG: dict[str, Any] = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def build_tiny_model(
    folder: str | Path,
    seed: int = 0,
    model_cfg: dict[str, Any] | None = None,
    preprocess_cfg: dict[str, Any] | None = None,
) -> Path:
    """Write a small random open_clip model (config JSON + safetensors) for ``local-dir:``."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = json.loads(json.dumps(model_cfg or TINY_MODEL_CFG))
    pre = {
        "mean": list(OPENAI_MEAN),
        "std": list(OPENAI_STD),
        "interpolation": "bicubic",
        "resize_mode": "shortest",
        **(preprocess_cfg or {}),
    }
    torch.manual_seed(seed)
    model = open_clip.CLIP(
        **{k: v for k, v in cfg.items() if k != "quick_gelu"},
        quick_gelu=cfg.get("quick_gelu", False),
    )
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": cfg, "preprocess_cfg": pre}, indent=2)
    )
    return folder


def install_hf_standin(
    cache_dir: str | Path,
    arch: str = "ViT-B-32-quickgelu",
    tag: str = "openai",
    seed: int = 0,
    dtype: str = "float16",
) -> Path:
    """Place a correctly shaped random checkpoint where huggingface_hub's cache expects
    the real one, so the named-model path (e.g. ``--model ViT-B/32``) loads offline."""
    import open_clip
    import torch
    from open_clip.pretrained import get_pretrained_cfg
    from safetensors.torch import save_file

    cfg = get_pretrained_cfg(arch, tag)
    hub = cfg["hf_hub"].rstrip("/")
    repo = "/".join(hub.split("/")[:2])
    filename = "/".join(hub.split("/")[2:]) or "open_clip_pytorch_model.bin"
    if filename == "open_clip_pytorch_model.bin":
        filename = "open_clip_model.safetensors"
    revision = hashlib.sha1(f"{repo}:{seed}".encode()).hexdigest()
    repo_dir = Path(cache_dir) / f"models--{repo.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)
    torch.manual_seed(seed)
    model = open_clip.create_model(arch, pretrained=None)
    target = getattr(torch, dtype)
    state = {
        k: (v.detach().to(target) if v.is_floating_point() else v.detach()).contiguous()
        for k, v in model.state_dict().items()
    }
    path = snapshot / filename
    save_file(state, str(path))
    return path


def photo_like(size: tuple[int, int] = (4000, 3000), seed: int = 0) -> Any:
    """A synthetic picture with the statistics that matter for decoding speed and for
    resampling error: smooth light falloff, mid-frequency blotches, hard-edged shapes and
    sensor-like noise (flat colour would make JPEG decoding unrealistically cheap).

    Built at a quarter of the size and upsampled, so a 12 MP image takes well under a
    second; the full-resolution noise keeps the JPEG as large as a camera's (≈2.5 MB).
    """
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    w, h = size
    sw, sh = max(8, w // 4), max(8, h // 4)

    def field(gw: int, gh: int, amp: float) -> Any:
        small = np.clip(rng.uniform(-amp, amp, (gh, gw, 3)) + 128, 0, 255).astype(np.uint8)
        up = Image.fromarray(small, "RGB").resize((sw, sh), Image.Resampling.BICUBIC)
        return np.asarray(up, dtype=np.int16) - 128

    base = rng.integers(60, 200, 3).astype(np.int16)
    img = base + field(4, 3, 70) + field(40, 30, 25) + field(max(2, sw // 10), max(2, sh // 10), 12)
    small = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(small)
    for _ in range(25):
        x0, y0 = int(rng.integers(0, sw)), int(rng.integers(0, sh))
        x1 = x0 + int(rng.integers(max(1, sw // 40), max(2, sw // 3)))
        y1 = y0 + int(rng.integers(max(1, sh // 40), max(2, sh // 3)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([x0, y0, x1, y1], fill=colour)
    big = np.asarray(small.resize((w, h), Image.Resampling.BICUBIC), dtype=np.int16)
    noise = rng.normal(0.0, 4.0, (h, w, 1)).astype(np.int16)
    return Image.fromarray(np.clip(big + noise, 0, 255).astype(np.uint8), "RGB")


def write_photo_corpus(
    folder: str | Path,
    count: int,
    size: tuple[int, int] = (4000, 3000),
    fmt: str = "jpg",
    seed: int = 0,
    quality: int = 90,
) -> list[Path]:
    """Write ``count`` distinct photo-like files (``0000.jpg``...); existing ones are kept,
    so a benchmark can cache its corpus between runs."""
    from concurrent.futures import ThreadPoolExecutor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:04d}.{fmt}" for i in range(count)]

    def make(i: int) -> None:
        if paths[i].exists():
            return
        image = photo_like(size, seed=seed * 100_003 + i)
        tmp = paths[i].with_suffix(".part")
        options = {"quality": quality} if fmt in ("jpg", "jpeg", "webp") else {}
        image.save(tmp, "JPEG" if fmt in ("jpg", "jpeg") else fmt.upper(), **options)
        tmp.replace(paths[i])

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(make, range(count)))
    return paths
