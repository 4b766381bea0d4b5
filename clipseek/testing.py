"""Stand-in models for tests, benchmarks and demos on machines without real weights.

Real CLIP weights are hundreds of megabytes from the network; these builders make
models with the right *shape* (so every code path runs) from a seed, offline.
They are part of the package so that tests, benchmarks and the screenshot script
share one implementation.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

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


#: Text for training small SentencePiece-style tokenizers and for comparing tokenisers:
#: English, accented Latin, German compounds, Cyrillic, Greek, Arabic, Hebrew, Devanagari,
#: Thai, Chinese, Japanese, Korean, emoji, HTML entities, odd spacing and punctuation.
MULTILINGUAL_SAMPLES: tuple[str, ...] = (
    "a dog playing on the beach at sunset",
    "Two children riding bicycles down a rainy street.",
    "ein Hund spielt am Strand bei Sonnenuntergang",
    "Straßenbahnhaltestelle im Schnee, Größe & Übermaß",
    "un café au lait sur une table en bois à Montréal",
    "niños jugando al fútbol en la plaza mayor, ¿verdad?",
    "uma criança comendo açaí na praia de São Paulo",
    "собака играет на пляже на закате",
    "ο σκύλος παίζει στην παραλία",
    "كلب يلعب على الشاطئ عند غروب الشمس",
    "כלב משחק על החוף בשקיעה",
    "समुद्र तट पर खेलता हुआ कुत्ता",
    "สุนัขเล่นบนชายหาดตอนพระอาทิตย์ตก",
    "一只狗在日落时分在海滩上玩耍",
    "夕暮れのビーチで遊ぶ犬と東京タワー",
    "해질녘 해변에서 노는 개",
    "Ærøskøbing, Þórsmörk, Łódź, Škoda, Ñandú, İstanbul",
    "naïve café résumé coöperate façade",
    "fish &amp; chips &lt;3 &quot;quoted&quot;",
    "🐶 on the 🏖️ at 🌅 — so cute!!! #dogs @home",
    "  lots   of\tspaces\nand_underscores_here  ",
    "C'est l'été; don't stop — it's 100% (really) [ok] {fine}",
)


def train_hub_tokenizer(
    folder: str | Path,
    *,
    vocab_size: int = 1200,
    specials: str = "eos",
    padding_side: str = "right",
    seed: int = 0,
    kind: str = "unigram",
) -> Path:
    """Train a small SentencePiece-style tokenizer and write it as a Hugging Face snapshot
    would hold it: ``tokenizer.json`` and ``tokenizer_config.json``.

    ``specials="eos"`` ends each text with ``</s>`` as SigLIP's T5 tokenizer does;
    ``"bos"`` starts it with ``<bos>`` as SigLIP 2's Gemma tokenizer does. ``kind``:
    ``"unigram"`` (T5's model), ``"bpe"`` (BPE with byte fallback over metaspace words,
    as SentencePiece's BPE models are converted) or ``"bpe-whole"`` (the same without a
    pre-tokeniser: spaces become ``▁`` and merges may cross words, as in Gemma's file)."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"tokenizer:{seed}")
    words = " ".join(MULTILINGUAL_SAMPLES).split()
    corpus = list(MULTILINGUAL_SAMPLES) * 20
    corpus += [" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) for _ in range(3000)]
    special_tokens = ["<pad>", "</s>", "<unk>", "<bos>"]
    trainer: Any
    if kind == "unigram":
        tok = Tokenizer(models.Unigram())
        trainer = trainers.UnigramTrainer(
            vocab_size=vocab_size, special_tokens=special_tokens, unk_token="<unk>"
        )
    elif kind in ("bpe", "bpe-whole"):
        tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
        bytes_ = [f"<0x{b:02X}>" for b in range(256)]
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size + 256,
            special_tokens=[*special_tokens, *bytes_],
            max_token_length=16,
        )
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}")
    if kind == "bpe-whole":
        tok.normalizer = normalizers.Sequence(
            [normalizers.NFKC(), normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")]
        )
        tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback()])
    else:
        tok.normalizer = normalizers.NFKC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
        tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.train_from_iterator(corpus, trainer)
    marker = "</s>" if specials == "eos" else "<bos>"
    template = "$A </s>" if specials == "eos" else "<bos> $A"
    tok.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(marker, tok.token_to_id(marker))]
    )
    tok.save(str(folder / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "pad_token": "<pad>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "bos_token": "<bos>",
        "padding_side": padding_side,
        "model_max_length": 64,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return folder / "tokenizer.json"


def tiny_siglip_cfg(vocab_size: int, context_length: int = 16) -> dict[str, Any]:
    """A reduced SigLIP: timm's smallest ViT with SigLIP's attention-pool head, squash
    resize and 0.5 mean/std, and a bidirectional text tower read at its last position."""
    return {
        "embed_dim": 192,
        "init_logit_bias": -10,
        "custom_text": True,
        "vision_cfg": {
            "image_size": 224,
            "timm_model_name": "vit_tiny_patch16_224",
            "timm_model_pretrained": False,
            "timm_pool": "map",
            "timm_proj": "none",
        },
        "text_cfg": {
            "context_length": context_length,
            "vocab_size": vocab_size,
            "hf_tokenizer_name": "local",
            "tokenizer_kwargs": {"clean": "canonicalize"},
            "width": 64,
            "heads": 2,
            "layers": 2,
            "no_causal_mask": True,
            "proj_bias": True,
            "pool_type": "last",
            "norm_kwargs": {"eps": 1e-06},
            "act_kwargs": {"approximate": "tanh"},
        },
    }


SIGLIP_PREPROCESS: dict[str, Any] = {
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "interpolation": "bicubic",
    "resize_mode": "squash",
}


def build_tiny_siglip(
    folder: str | Path,
    seed: int = 0,
    *,
    specials: str = "bos",
    padding_side: str = "right",
    kind: str = "unigram",
) -> Path:
    """A small random SigLIP-family model with a trained tokenizer (``kind``: see
    :func:`train_hub_tokenizer`), for ``local-dir:``."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    train_hub_tokenizer(folder, specials=specials, padding_side=padding_side, seed=seed, kind=kind)
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_file(str(folder / "tokenizer.json")).get_vocab_size()
    cfg = tiny_siglip_cfg(vocab)
    torch.manual_seed(seed)
    model = open_clip.CustomTextCLIP(
        cfg["embed_dim"],
        cfg["vision_cfg"],
        cfg["text_cfg"],
        init_logit_bias=cfg["init_logit_bias"],
    )
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": cfg, "preprocess_cfg": SIGLIP_PREPROCESS}, indent=2)
    )
    return folder


def install_hf_standin(
    cache_dir: str | Path,
    arch: str = "ViT-B-32-quickgelu",
    tag: str = "openai",
    seed: int = 0,
    dtype: str = "float16",
    *,
    model: str | None = None,
    full_tokenizer: bool = False,
) -> Path:
    """Place a correctly shaped random checkpoint where huggingface_hub's cache expects
    the real one, so the named-model path (e.g. ``--model ViT-B/32``) loads offline.

    ``model`` names it as a user would (``"ViT-B-32-SigLIP2-256:webli"``, the default,
    ``DEFAULT_MODEL``) instead of ``arch`` and ``tag``; the hub repo and file name come
    from open_clip's table, as the real download's do. SigLIP-family models also get a
    ``tokenizer.json``: a small trained one, or with ``full_tokenizer`` one of the real
    vocabulary's size (for measuring what loading it costs)."""
    import open_clip
    import torch
    from open_clip.pretrained import get_pretrained_cfg
    from safetensors.torch import save_file

    if model is not None:
        from clipseek.models.catalogue import resolve_model

        spec = resolve_model(model)
        if spec.kind != "pretrained" or spec.pretrained is None:
            raise ValueError(f"{model!r} is not a MODEL:PRETRAINED name with hub weights.")
        arch, tag = spec.arch, spec.pretrained
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
    text_cfg = (open_clip.get_model_config(arch) or {}).get("text_cfg", {})
    if text_cfg.get("hf_tokenizer_name"):
        # SigLIP's hub repos carry the tokenizer beside the weights; a small trained one
        # (ids within the model's vocabulary) stands in for it, Gemma-style for SigLIP 2.
        style = "bos" if "siglip2" in arch.lower() else "eos"
        train_hub_tokenizer(snapshot, specials=style, seed=seed)
        if full_tokenizer:
            write_full_size_bpe(snapshot / "tokenizer.json", int(text_cfg["vocab_size"]), seed)
    return path


def write_full_size_bpe(path: str | Path, vocab_size: int, seed: int = 0) -> Path:
    """Replace a trained stand-in ``tokenizer.json`` by a BPE of the real vocabulary size
    (SigLIP 2's Gemma tokenizer has 256,000 tokens): random merges over Latin, Cyrillic,
    kana and 8,000 CJK characters, keeping the file's normaliser, pre-tokeniser and special
    tokens. What loading the real tokenizer costs a cold query depends on that size."""
    from tokenizers import Tokenizer, models

    path = Path(path)
    small = Tokenizer.from_file(str(path))
    specials = ["<pad>", "</s>", "<unk>", "<bos>"]
    vocab = {token: small.token_to_id(token) for token in specials}
    rng = random.Random(f"bpe:{seed}")
    chars = [chr(c) for c in range(0x21, 0x7F)] + [chr(c) for c in range(0xE0, 0x17F)]
    chars += [chr(c) for c in range(0x430, 0x450)] + [chr(c) for c in range(0x3041, 0x3097)]
    short = ["\u2581", *chars]
    chars += [chr(c) for c in range(0x4E00, 0x4E00 + 8000)]
    for ch in ["\u2581", *chars]:
        vocab.setdefault(ch, len(vocab))
    tokens, merges = list(vocab)[len(specials) :], []
    while len(vocab) < vocab_size:
        a = rng.choice(tokens if rng.random() < 0.5 else short)
        b = rng.choice(short if rng.random() < 0.7 else tokens)
        if len(a) + len(b) <= 12 and a + b not in vocab:
            vocab[a + b] = len(vocab)
            tokens.append(a + b)
            merges.append((a, b))
    big = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>"))
    big.normalizer = small.normalizer
    big.pre_tokenizer = small.pre_tokenizer
    big.post_processor = small.post_processor
    big.decoder = small.decoder
    big.save(str(path))
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


# --------------------------------------------------------------------------- synthetic scenes
#
# Random weights give vectors of the right shape but no meaning, so a demo that searches
# for "a red circle" would rank pictures arbitrarily. The scenes below are simple enough
# for a model of under two megabytes to learn (clipseek/fixtures/shapes-clip, trained by
# scripts/train_fixture_model.py) in minutes on a CPU, yet look like small photographs
# (lit gradient backgrounds, blotchy texture, soft shadows, sensor noise, JPEG), and their
# captions are known, so retrieval quality can be asserted rather than eyeballed.

#: Canonical sRGB values; each scene jitters them a little, as lighting would.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (214, 38, 36),
    "green": (44, 164, 62),
    "blue": (38, 84, 214),
    "yellow": (240, 214, 40),
    "purple": (128, 48, 168),
    "orange": (242, 128, 22),
    "white": (246, 246, 244),
    "black": (16, 16, 18),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "stripes")
BACKGROUNDS: tuple[str, ...] = ("dark", "light")

#: The trained "shapes" model shipped inside the package: it knows these colours, shapes
#: and backgrounds and nothing else, which is enough for demos and semantic tests.
FIXTURE_MODEL_DIR: Path = Path(__file__).resolve().parent / "fixtures" / "shapes-clip"


def fixture_model_spec() -> str:
    """The ``--model`` value for the shipped shapes model, for demos and benchmarks."""
    return f"local-dir:{FIXTURE_MODEL_DIR}"


@dataclass(frozen=True)
class Scene:
    """What a synthetic picture shows (see :func:`random_scene` to leave parts to chance)."""

    colour: str
    shape: str
    background: str = "dark"

    def __post_init__(self) -> None:
        for value, allowed, what in (
            (self.colour, COLOURS, "colour"),
            (self.shape, SHAPES, "shape"),
            (self.background, BACKGROUNDS, "background"),
        ):
            if value not in allowed:
                raise ValueError(f"Unknown {what} {value!r}; choose one of {', '.join(allowed)}.")

    @property
    def slug(self) -> str:
        """The file-name stem used by :func:`generate_dataset`, e.g. ``red-circle``."""
        return f"{self.colour}-{self.shape}"

    @property
    def caption(self) -> str:
        """The full description, e.g. "a red circle on a dark background"."""
        return f"{noun_phrase(self.colour, self.shape)} on a {self.background} background"

    def matches(self, colour: str | None, shape: str | None, background: str | None) -> bool:
        """Whether a description naming these attributes (None: not named) fits the scene."""
        return (
            (colour is None or colour == self.colour)
            and (shape is None or shape == self.shape)
            and (background is None or background == self.background)
        )


def noun_phrase(colour: str | None, shape: str | None) -> str:
    """ "a red circle", "red stripes", "a circle", "something red": English, not templates."""
    if shape is None:
        return f"something {colour}" if colour else "something"
    words = " ".join(w for w in (colour, shape) if w)
    if shape == "stripes":
        return words
    article = "an" if words[0] in "aeiou" else "a"
    return f"{article} {words}"


_CAPTION_WORDS = re.compile(r"[a-z]+")


def parse_caption(text: str) -> tuple[str | None, str | None, str | None]:
    """The (colour, shape, background) a caption names; raises on a caption naming none."""
    words = _CAPTION_WORDS.findall(text.lower())
    colour = shape = background = None
    for i, word in enumerate(words):
        singular = word[:-1] if word.endswith("s") and word[:-1] in SHAPES else word
        if word in BACKGROUNDS and i + 1 < len(words) and words[i + 1] == "background":
            background = word
        elif word in COLOURS:
            colour = word
        elif word in SHAPES or singular in SHAPES:
            shape = word if word in SHAPES else singular
    if colour is None and shape is None and background is None:
        raise ValueError(
            f"The caption {text!r} names no colour ({', '.join(COLOURS)}), "
            f"shape ({', '.join(SHAPES)}) or background ({', '.join(BACKGROUNDS)})."
        )
    return colour, shape, background


def _as_scene(parts: Scene | str | Mapping[str, str], rng: random.Random) -> Scene:
    if isinstance(parts, Scene):
        return parts
    if isinstance(parts, str):
        colour, shape, background = parse_caption(parts)
    elif isinstance(parts, Mapping):
        unknown = set(parts) - {"colour", "shape", "background"}
        if unknown:
            raise ValueError(
                f"Scene parts are colour, shape and background, not {', '.join(sorted(unknown))}."
            )
        colour, shape, background = parts.get("colour"), parts.get("shape"), parts.get("background")
    else:
        raise TypeError(f"Describe a scene with a Scene, a caption or a dict, not {parts!r}.")
    return random_scene(rng, colour=colour, shape=shape, background=background)


def random_scene(
    rng: random.Random,
    colour: str | None = None,
    shape: str | None = None,
    background: str | None = None,
) -> Scene:
    """A scene with the unnamed attributes drawn at random; white avoids light backgrounds
    and black dark ones unless asked for, as those pictures are hard even for people."""
    colour = colour or rng.choice(list(COLOURS))
    shape = shape or rng.choice(SHAPES)
    if background is None:
        background = {"white": "dark", "black": "light"}.get(colour) or rng.choice(BACKGROUNDS)
    return Scene(colour, shape, background)


def make_scene(
    parts: Scene | str | Mapping[str, str],
    size: tuple[int, int] = (128, 96),
    seed: int = 0,
) -> Image.Image:
    """Draw a photo-like picture of ``parts`` (a :class:`Scene`, a caption such as
    "a blue star" or a dict), varying lighting, texture, size and position by ``seed``.

    The shape stays inside the central square so that a centre crop (CLIP's usual
    preprocessing) never cuts it off.
    """
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    width, height = size
    if width < 16 or height < 16:
        raise ValueError(f"Scenes need at least 16×16 pixels, not {width}×{height}.")
    rng = random.Random(f"scene:{seed}")
    scene = _as_scene(parts, rng)
    nprng = np.random.default_rng(rng.getrandbits(64))

    # Background: a lit gradient of a muted hue, plus low-frequency blotches.
    if scene.background == "dark":
        low, high = (70, 100) if scene.colour == "black" else (22, 80)
    else:
        low, high = (140, 170) if scene.colour == "white" else (170, 232)
    lum = rng.uniform(low, high)
    hue = np.array([rng.uniform(0.6, 1.4) for _ in range(3)])
    tint = lum * (0.75 + 0.25 * hue / hue.mean())
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (np.cos(angle) * xx / width + np.sin(angle) * yy / height) - 0.5
    light = 1.0 + rng.uniform(0.1, 0.35) * ramp
    cells = nprng.normal(0.0, 1.0, (rng.randint(3, 7), rng.randint(3, 7))).astype(np.float32)
    blotch = Image.fromarray(cells).resize((width, height), Image.Resampling.BICUBIC)
    texture = 1.0 + rng.uniform(0.03, 0.1) * np.asarray(blotch)
    canvas = tint[None, None, :] * (light * texture)[:, :, None]

    # Shape: drawn on a 4× mask for anti-aliased edges, inside the central square.
    side = min(width, height)
    radius = side * rng.uniform(0.22, 0.4)
    cx = width / 2 + rng.uniform(-1, 1) * (side / 2 - radius) * 0.9
    cy = height / 2 + rng.uniform(-1, 1) * (side / 2 - radius) * 0.9
    k = 4
    mask_img = Image.new("L", (width * k, height * k), 0)
    _draw_shape(ImageDraw.Draw(mask_img), scene.shape, cx * k, cy * k, radius * k, rng)
    mask_img = mask_img.resize((width, height), Image.Resampling.BOX)
    mask = np.asarray(mask_img, dtype=np.float32)[:, :, None] / 255.0

    # A soft shadow down-light of the shape, then the shape with its own shading.
    offset = max(1, round(radius * 0.12))
    shadow_img = mask_img.transform(
        mask_img.size, Image.Transform.AFFINE, (1, 0, -offset, 0, 1, -offset)
    ).filter(ImageFilter.GaussianBlur(max(1.0, radius * 0.12)))
    shadow = np.asarray(shadow_img, dtype=np.float32)[:, :, None] / 255.0
    canvas = canvas * (1.0 - 0.45 * shadow)
    base = np.array(COLOURS[scene.colour], dtype=np.float32)
    jitter = np.array([rng.uniform(-14, 14) for _ in range(3)], dtype=np.float32)
    shade = 1.0 + rng.uniform(0.08, 0.22) * ((cx - xx) + (cy - yy)) / (2 * radius)
    colour = (base + jitter)[None, None, :] * np.clip(shade, 0.75, 1.2)[:, :, None]
    canvas = canvas * (1.0 - mask) + colour * mask

    canvas += nprng.normal(0.0, rng.uniform(2.0, 7.0), canvas.shape)
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), "RGB")
    blur = rng.uniform(0.0, 0.7) * side / 96
    return image.filter(ImageFilter.GaussianBlur(blur)) if blur > 0.2 else image


def _draw_shape(draw: Any, shape: str, cx: float, cy: float, r: float, rng: random.Random) -> None:
    def rotated(points: Iterable[tuple[float, float]], angle: float) -> list[tuple[float, float]]:
        c, s = math.cos(angle), math.sin(angle)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in points]

    tilt = math.radians(rng.uniform(-20, 20))
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif shape == "square":
        h = r * 0.82
        draw.polygon(rotated([(-h, -h), (h, -h), (h, h), (-h, h)], tilt), fill=255)
    elif shape == "triangle":
        pts = [
            (r * math.cos(a), r * math.sin(a))
            for a in (-math.pi / 2 + i * 2 * math.pi / 3 for i in range(3))
        ]
        draw.polygon(rotated([(x, y + r * 0.15) for x, y in pts], tilt), fill=255)
    elif shape == "star":
        pts = [
            (
                (r if i % 2 == 0 else r * 0.42) * math.cos(-math.pi / 2 + i * math.pi / 5),
                (r if i % 2 == 0 else r * 0.42) * math.sin(-math.pi / 2 + i * math.pi / 5),
            )
            for i in range(10)
        ]
        draw.polygon(rotated(pts, tilt), fill=255)
    elif shape == "cross":
        a, b = r, r * 0.3
        for box in ([(-a, -b), (a, -b), (a, b), (-a, b)], [(-b, -a), (b, -a), (b, a), (-b, a)]):
            draw.polygon(rotated(box, tilt), fill=255)
    elif shape == "stripes":
        count = rng.randint(3, 4)
        pitch = 2 * r / count
        band = pitch * rng.uniform(0.45, 0.6)
        angle = rng.uniform(0, math.pi)
        for i in range(count):
            x0 = -r + i * pitch + (pitch - band) / 2
            draw.polygon(
                rotated([(x0, -r), (x0 + band, -r), (x0 + band, r), (x0, r)], angle), fill=255
            )
    else:  # guarded by Scene, kept for direct callers
        raise ValueError(f"Unknown shape {shape!r}; choose one of {', '.join(SHAPES)}.")


def generate_dataset(
    folder: str | Path,
    n: int,
    seed: int = 0,
    size: tuple[int, int] = (128, 96),
    scenes: Iterable[Scene | str | Mapping[str, str]] | None = None,
    quality: int = 90,
) -> list[tuple[Path, Scene]]:
    """Write ``n`` JPEG scenes named after their content (``red-circle-0007.jpg``).

    Without ``scenes`` the colour/shape pairs are dealt out evenly (every pair appears
    before any repeats) in a seeded order, so small sets still cover the classes.
    """
    if n < 0:
        raise ValueError(f"The number of images must be zero or more, not {n}.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"dataset:{seed}")
    if scenes is None:
        pairs = [(c, s) for c in COLOURS for s in SHAPES]
        chosen: list[Scene | str | Mapping[str, str]] = []
        while len(chosen) < n:
            rng.shuffle(pairs)
            chosen.extend({"colour": c, "shape": s} for c, s in pairs)
        wanted = chosen[:n]
    else:
        wanted = list(scenes)[:n]
        if len(wanted) < n:
            raise ValueError(f"Asked for {n} images but only {len(wanted)} scenes were given.")
    written: list[tuple[Path, Scene]] = []
    for i, parts in enumerate(wanted):
        scene_seed = rng.getrandbits(32)
        scene = _as_scene(parts, random.Random(scene_seed))
        image = make_scene(scene, size=size, seed=scene_seed)
        path = folder / f"{scene.slug}-{i:04d}.jpg"
        image.save(path, "JPEG", quality=quality)
        written.append((path, scene))
    return written
