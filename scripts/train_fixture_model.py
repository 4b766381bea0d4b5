"""Train the tiny "shapes" CLIP shipped in ``clipseek/fixtures/shapes-clip``.

Real CLIP weights cannot be downloaded on development and CI machines, and a randomly
initialised model ranks pictures arbitrarily, so demos, screenshots and semantic tests
would show noise. This script trains a model of under two megabytes contrastively on the
synthetic scenes of :mod:`clipseek.testing` ("a red circle on a dark background") on the
CPU in a few minutes, saves it as an ordinary open_clip ``local-dir:`` folder, then loads
it back through clipseek's own model path and measures text→image retrieval on a fresh
held-out set, failing if the model is not clearly useful.

    python scripts/train_fixture_model.py            # train, save, check
    python scripts/train_fixture_model.py --check    # only check the shipped model

Everything is seeded; the same torch build and thread count give the same weights.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from clipseek.testing import (
    BACKGROUNDS,
    COLOURS,
    FIXTURE_MODEL_DIR,
    OPENAI_MEAN,
    OPENAI_STD,
    SHAPES,
    Scene,
    generate_dataset,
    make_scene,
    noun_phrase,
    random_scene,
)

#: The vocabulary table (49408 × text width) dominates the file, so the text tower is
#: narrow: width 16 is 1.6 MB in fp16. Width 8 halves that but cannot tell "a red circle"
#: from "a red square" well enough (colour+shape top-1 fell from ~0.95 to ~0.7).
#: Average pooling and a third layer made the most of a small vision tower.
MODEL_CFG: dict[str, Any] = {
    "embed_dim": 32,
    "quick_gelu": False,
    "vision_cfg": {
        "image_size": 48,
        "layers": 3,
        "width": 48,
        "head_width": 16,
        "patch_size": 8,
        "pool_type": "avg",
    },
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 2},
}
PREPROCESS_CFG: dict[str, Any] = {
    "size": 48,
    "mean": list(OPENAI_MEAN),
    "std": list(OPENAI_STD),
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}
#: Sizes the training scenes are drawn at, so resizing from any of them is familiar.
TRAIN_SIZES = ((64, 64), (96, 72), (128, 96), (160, 120), (72, 96))

LEARNING_RATE = 3e-3
#: Colour+shape R@1 the saved model must reach (chance is 1/48); tests ask the same.
MIN_TOP1 = 0.70


# --------------------------------------------------------------------------- captions


def caption_bank() -> tuple[list[str], list[tuple[str | None, str | None, str | None]]]:
    """Every training caption with the (colour, shape, background) it names."""
    texts: list[str] = []
    named: list[tuple[str | None, str | None, str | None]] = []

    def add(text: str, colour: str | None, shape: str | None, bg: str | None) -> None:
        texts.append(text)
        named.append((colour, shape, bg))

    for colour in (*COLOURS, None):
        for shape in (*SHAPES, None):
            if colour is None and shape is None:
                continue
            phrase = noun_phrase(colour, shape)
            for template in ("{}", "a photo of {}", "a picture of {}", "an image of {}"):
                add(template.format(phrase), colour, shape, None)
            for bg in BACKGROUNDS:
                add(f"{phrase} on a {bg} background", colour, shape, bg)
                add(f"a photo of {phrase} on a {bg} background", colour, shape, bg)
            if colour and shape:
                add(f"{colour} {shape}", colour, shape, None)
            if colour and not shape:
                add(f"a {colour} shape", colour, None, None)
    return texts, named


def fits(scene_attrs: Any, caption_attrs: Any) -> Any:
    """Which captions (columns) describe which scenes (rows): every attribute a caption
    names must be the scene's. Attributes are indices, -1 where a caption is silent."""
    silent = caption_attrs[None, :, :] == -1
    return (silent | (caption_attrs[None, :, :] == scene_attrs[:, None, :])).all(-1)


# --------------------------------------------------------------------------- data


def render_training_set(n: int, seed: int, transform: Any) -> tuple[Any, list[Scene]]:
    """Scenes through a JPEG round trip and the model's own eval transform, once."""
    import torch
    from PIL import Image

    rng = random.Random(f"train:{seed}")
    tensors, scenes = [], []
    for i in range(n):
        scene = random_scene(rng)
        if rng.random() < 0.1:  # the hard pairs too, now and then
            scene = Scene(scene.colour, scene.shape, rng.choice(BACKGROUNDS))
        image = make_scene(scene, size=rng.choice(TRAIN_SIZES), seed=seed * 1_000_003 + i)
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=rng.randint(70, 95))
        buffer.seek(0)
        tensors.append(transform(Image.open(buffer).convert("RGB")))
        scenes.append(scene)
    return torch.stack(tensors), scenes


# --------------------------------------------------------------------------- training


def build_model(seed: int) -> Any:
    import open_clip
    import torch

    torch.manual_seed(seed)
    cfg = dict(MODEL_CFG)
    quick = cfg.pop("quick_gelu")
    return open_clip.CLIP(**cfg, quick_gelu=quick)


def encode_short_text(model: Any, tokens: Any) -> Any:
    """``model.encode_text`` for token rows cut short after the longest caption.

    The text tower's mask is causal and it pools at the end-of-text token, so positions
    after that token cannot change the result; skipping the padding of a 77-token context
    makes the text tower several times cheaper to train.
    """
    from open_clip.transformer import text_global_pool

    n = tokens.shape[1]
    x = model.token_embedding(tokens) + model.positional_embedding[:n]
    x = model.transformer(x, attn_mask=model.attn_mask[:n, :n])
    x = text_global_pool(model.ln_final(x), tokens, model.text_pool_type)
    return x @ model.text_projection


def train(
    steps: int, n_images: int, batch: int, seed: int, log: bool = True
) -> tuple[Any, set[int]]:
    import open_clip
    import torch
    import torch.nn.functional as F
    from open_clip.transform import image_transform

    torch.manual_seed(seed)
    random.seed(seed)
    transform = image_transform(
        PREPROCESS_CFG["size"],
        is_train=False,
        mean=PREPROCESS_CFG["mean"],
        std=PREPROCESS_CFG["std"],
        interpolation=PREPROCESS_CFG["interpolation"],
        resize_mode=PREPROCESS_CFG["resize_mode"],
    )
    started = time.perf_counter()
    images, scenes = render_training_set(n_images, seed, transform)
    if log:
        print(f"rendered {n_images} training scenes in {time.perf_counter() - started:.1f}s")

    texts, named = caption_bank()
    tokenizer = open_clip.get_tokenizer("ViT-B-32")  # the standard CLIP BPE, as the config implies
    tokens = tokenizer(texts)
    used_tokens = {int(t) for t in tokens.flatten().tolist()}
    tokens = tokens[:, : int((tokens != 0).sum(1).max())]  # see encode_short_text

    # Attributes as indices (-1: not named) so a batch's positives are one comparison.
    def index_of(value: str | None, options: tuple[str, ...]) -> int:
        return -1 if value is None else options.index(value)

    axes = (tuple(COLOURS), SHAPES, BACKGROUNDS)
    named_idx = torch.tensor(
        [[index_of(v, o) for v, o in zip(nm, axes, strict=True)] for nm in named]
    )
    scene_idx = torch.tensor(
        [
            [index_of(v, o) for v, o in zip((s.colour, s.shape, s.background), axes, strict=True)]
            for s in scenes
        ]
    )
    # For each scene class, the captions that describe it; those naming colour and shape
    # (what users type) are drawn most of the time.
    full = (named_idx[:, 0] >= 0) & (named_idx[:, 1] >= 0)
    by_class: dict[Scene, tuple[list[int], list[int]]] = {}
    for scene, attrs in zip(scenes, scene_idx, strict=True):
        if scene not in by_class:
            ok = fits(attrs[None], named_idx)[0]
            by_class[scene] = (
                ok.nonzero().flatten().tolist(),
                (ok & full).nonzero().flatten().tolist(),
            )

    model = build_model(seed)
    model.train()
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        plain = param.ndim < 2 or "embedding" in name or "logit_scale" in name
        (no_decay if plain else decay).append(param)
    optimiser = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
        lr=LEARNING_RATE,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    warmup = max(1, steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lr_at)
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(f"captions:{seed}")
    started = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(0, n_images, (batch,), generator=gen)
        chosen = []
        for i in idx.tolist():
            any_caption, full_caption = by_class[scenes[i]]
            chosen.append(rng.choice(full_caption if rng.random() < 0.7 else any_caption))
        # Several pictures in a batch share a description: all of them are positives.
        pos = fits(scene_idx[idx], named_idx[chosen]).float()
        img_f = F.normalize(model.encode_image(images[idx]), dim=-1)
        txt_f = F.normalize(encode_short_text(model, tokens[chosen]), dim=-1)
        logits = model.logit_scale.exp().clamp(max=100) * img_f @ txt_f.T
        loss_i = -(pos / pos.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
        loss_t = -(pos.T / pos.T.sum(1, keepdim=True) * logits.T.log_softmax(1)).sum(1).mean()
        loss = (loss_i + loss_t) / 2
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        scheduler.step()
        if log and (step % 100 == 0 or step == steps - 1):
            print(
                f"step {step:5d}  loss {loss.item():.3f}  "
                f"scale {model.logit_scale.exp().item():.1f}  "
                f"{time.perf_counter() - started:.0f}s",
                flush=True,
            )
    model.eval()
    with torch.no_grad():  # the shortcut must agree with open_clip's own text path
        full_tokens = tokenizer(texts[:16])
        short = encode_short_text(model, full_tokens[:, : tokens.shape[1]])
        if not torch.allclose(short, model.encode_text(full_tokens), atol=1e-5):
            raise RuntimeError("encode_short_text disagrees with CLIP.encode_text")
    return model, used_tokens


def save(model: Any, used_tokens: set[int], folder: Path) -> Path:
    """Write the local-dir folder: config JSON and fp16 safetensors.

    Rows of the vocabulary table that no training caption used never received a
    gradient; they are zeroed so unknown words carry no arbitrary meaning (and the file
    compresses well in git and in wheels).
    """
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    table = state["token_embedding.weight"]
    keep = torch.zeros(table.shape[0], dtype=torch.bool)
    keep[sorted(used_tokens)] = True
    table[~keep] = 0
    state = {
        k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous()
        for k, v in state.items()
    }
    weights = folder / "open_clip_model.safetensors"
    save_file(state, str(weights), metadata={"format": "pt"})
    weights.chmod(0o644)  # safetensors writes 0600; wheels keep the mode, other users must read it
    config = {"model_cfg": MODEL_CFG, "preprocess_cfg": PREPROCESS_CFG}
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder


# --------------------------------------------------------------------------- checking


@dataclass(frozen=True)
class Retrieval:
    """Text→image figures averaged over a family of queries.

    ``recall_at_1``: share of queries whose first picture fits; ``recall_at_5``: share with
    a fitting picture in the first five; ``precision_at_5``: share of the first five that
    fit; ``mean_ap``: mean average precision over the whole ranking.
    """

    queries: int
    recall_at_1: float
    recall_at_5: float
    precision_at_5: float
    mean_ap: float
    chance_at_1: float


def evaluate(
    model_dir: Path, n_images: int = 480, seed: int = 20240
) -> tuple[dict[str, Retrieval], float]:
    """Text→image retrieval on a fresh generated folder, read and embedded through
    clipseek's own model and image paths; also image→caption zero-shot accuracy."""
    import numpy as np
    import torch

    from clipseek.models import load_model, resolve_model
    from clipseek.photos.imaging import load_for_model

    clip = load_model(resolve_model(f"local-dir:{model_dir}"), device="cpu", precision="fp32")
    with tempfile.TemporaryDirectory() as tmp:
        items = generate_dataset(tmp, n_images, seed=seed)
        batch = torch.stack(
            [load_for_model(str(p), clip.transform, clip.image_size, None)[0] for p, _ in items]
        )
    image_vecs = clip.encode_images(batch)
    scenes = [s for _, s in items]

    def retrieval(queries: list[tuple[str | None, str | None]]) -> Retrieval:
        text_vecs = clip.encode_texts([noun_phrase(c, s) for c, s in queries]).vectors
        order = np.argsort(-(text_vecs @ image_vecs.T), axis=1)
        r1, r5, p5, aps, chance = [], [], [], [], []
        for row, (colour, shape) in zip(order, queries, strict=True):
            fit = np.array([s.matches(colour, shape, None) for s in scenes])
            relevant = fit[row]
            r1.append(relevant[0])
            r5.append(relevant[:5].any())
            p5.append(relevant[:5].mean())
            precision = np.cumsum(relevant) / np.arange(1, len(row) + 1)
            aps.append(precision[relevant].mean())
            chance.append(fit.mean())
        return Retrieval(len(queries), *(float(np.mean(v)) for v in (r1, r5, p5, aps, chance)))

    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    results = {
        "colour+shape": retrieval(pairs),
        "colour only": retrieval([(c, None) for c in COLOURS]),
        "shape only": retrieval([(None, s) for s in SHAPES]),
    }
    text_vecs = clip.encode_texts([noun_phrase(c, s) for c, s in pairs]).vectors
    guesses = np.argmax(image_vecs @ text_vecs.T, axis=1)
    zero_shot = float(
        np.mean([pairs[g] == (s.colour, s.shape) for g, s in zip(guesses, scenes, strict=True)])
    )
    return results, zero_shot


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=FIXTURE_MODEL_DIR)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads; one is fastest for a model this small on a shared machine",
    )
    parser.add_argument("--check", action="store_true", help="only evaluate the model in --out")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if not args.check:
        started = time.perf_counter()
        model, used = train(args.steps, args.images, args.batch, args.seed)
        elapsed = time.perf_counter() - started
        save(model, used, args.out)
        size = (args.out / "open_clip_model.safetensors").stat().st_size
        print(f"trained in {elapsed:.0f}s; saved {args.out} ({size / 1024:.0f} KiB weights)")
    results, zero_shot = evaluate(args.out)
    print(
        f"{'queries':14s} {'n':>3s} {'R@1':>6s} {'R@5':>6s} {'P@5':>6s} {'mAP':>6s} {'chance':>7s}"
    )
    for name, r in results.items():
        print(
            f"{name:14s} {r.queries:3d} {r.recall_at_1:6.3f} {r.recall_at_5:6.3f} "
            f"{r.precision_at_5:6.3f} {r.mean_ap:6.3f} {r.chance_at_1:7.3f}"
        )
    print(f"zero-shot colour+shape classification of each picture: {zero_shot:.3f}")
    top1 = results["colour+shape"].recall_at_1
    if top1 < MIN_TOP1:
        print(f"FAILED: colour+shape R@1 {top1:.2f} < {MIN_TOP1}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
