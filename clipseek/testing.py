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
