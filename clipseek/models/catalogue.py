"""Model names: the classic OpenAI names, open_clip pairs, hf-hub: and local-dir:.

Resolved without torch, so that the index can be opened and checked (and the fast
ONNX path found) before anything heavy is imported.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from clipseek.errors import ModelError

#: OpenAI's original names, as users know them from the ``clip`` package.
#: OpenAI trained with QuickGELU, so each maps to open_clip's ``-quickgelu``
#: architecture: loading those weights into a GELU model gives subtly wrong vectors.
CLASSIC_MODELS: dict[str, tuple[str, str]] = {
    "ViT-B/32": ("ViT-B-32-quickgelu", "openai"),
    "ViT-B/16": ("ViT-B-16-quickgelu", "openai"),
    "ViT-L/14": ("ViT-L-14-quickgelu", "openai"),
    "ViT-L/14@336px": ("ViT-L-14-336-quickgelu", "openai"),
    "RN50": ("RN50-quickgelu", "openai"),
    "RN101": ("RN101-quickgelu", "openai"),
    "RN50x4": ("RN50x4-quickgelu", "openai"),
    "RN50x16": ("RN50x16-quickgelu", "openai"),
    "RN50x64": ("RN50x64-quickgelu", "openai"),
}


#: Defaults of earlier versions: an index built with one, when no model is named, keeps
#: being answered by it (see Engine._choose_spec) rather than by today's default.
PREVIOUS_DEFAULTS: tuple[str, ...] = ("ViT-B-32:laion2b_s34b_b79k", "ViT-B/32")


#: Where the published figures come from (docs/MODELS.md quotes both tables).
SOURCES: dict[str, str] = {
    "xm3600": "Immich's model table (docs.immich.app, Searching: CLIP models): "
    "Crossmodal-3600, mean of text→image R@1/5/10, English; CPU ms per image on a "
    "Ryzen 7800X3D, fp32",
    "flickr": "open_clip's docs/openclip_retrieval_results.csv: Flickr30k text→image R@1",
    "coco": "open_clip's docs/openclip_retrieval_results.csv: MSCOCO text→image R@1",
}


@dataclass(frozen=True)
class CatalogEntry:
    """A model worth suggesting, with published figures to choose by (None: not published).

    ``hub`` and ``files`` say where huggingface_hub keeps the weights, so that
    ``clipseek models`` can tell which are on this machine without importing open_clip
    (whose import brings in torch).
    """

    name: str
    xm3600: float | None  # Crossmodal-3600 English, mean of R@1/5/10 (Immich)
    flickr_r1: float | None  # Flickr30k text→image Recall@1, percent (open_clip)
    coco_r1: float | None  # MSCOCO text→image Recall@1, percent (open_clip)
    cpu_ms: float | None  # Immich's CPU ms per image (7800X3D, fp32)
    download_mb: int  # fp32 checkpoint: 4 bytes per parameter of the architecture
    licence: str
    languages: str  # "en", or "multi" (trained on many languages)
    family: str  # "clip" or "siglip": the scale its cosines live on
    hub: str  # the Hugging Face repo open_clip fetches the weights from
    note: str
    gflops: float | None = None  # image encoder GFLOPs per image (kept for --json)
    files: tuple[str, ...] = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")

    @property
    def recall_at_1(self) -> float | None:
        """The Flickr30k figure under its former name (``clipseek models --json``)."""
        return self.flickr_r1


CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        "ViT-B-32-SigLIP2-256:webli",
        73.2,
        None,
        None,
        3.31,
        1507,
        "Apache-2.0",
        "multi",
        "siglip",
        "timm/ViT-B-32-SigLIP2-256",
        "default: best retrieval meeting the rule; many languages",
    ),
    CatalogEntry(
        "ViT-B-32:laion2b_s34b_b79k",
        68.8,
        66.8,
        39.3,
        2.29,
        605,
        "MIT",
        "en",
        "clip",
        "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
        "the default of 0.1; English; faster",
        8.8,
    ),
    CatalogEntry(
        "ViT-B/32",
        59.4,
        58.8,
        30.4,
        2.26,
        605,
        "MIT",
        "en",
        "clip",
        "timm/vit_base_patch32_clip_224.openai",
        "OpenAI; the first default",
        8.8,
    ),
    CatalogEntry(
        "ViT-B-32-256:datacomp_s34b_b86k",
        None,
        64.9,
        39.9,
        None,
        605,
        "MIT",
        "en",
        "clip",
        "laion/CLIP-ViT-B-32-256x256-DataComp-s34B-b86K",
        "rclip's default; 256 px",
    ),
    CatalogEntry(
        "ViT-B-16-SigLIP2:webli",
        75.2,
        None,
        None,
        5.81,
        1501,
        "Apache-2.0",
        "multi",
        "siglip",
        "timm/ViT-B-16-SigLIP2",
        "best here; 2.5× B/32's cost",
    ),
    CatalogEntry(
        "ViT-B-16-SigLIP:webli",
        71.6,
        74.7,
        47.8,
        5.77,
        813,
        "Apache-2.0",
        "en",
        "siglip",
        "timm/ViT-B-16-SigLIP",
        "English SigLIP",
    ),
    CatalogEntry(
        "ViT-B/16",
        58.3,
        62.2,
        33.1,
        5.03,
        598,
        "MIT",
        "en",
        "clip",
        "timm/vit_base_patch16_clip_224.openai",
        "OpenAI; 4× the compute",
        35.1,
    ),
    CatalogEntry(
        "ViT-L/14",
        60.1,
        65.0,
        36.5,
        19.91,
        1710,
        "MIT",
        "en",
        "clip",
        "timm/vit_large_patch14_clip_224.openai",
        "OpenAI; wants a GPU",
        162.0,
    ),
    CatalogEntry(
        "RN50",
        58.3,
        57.4,
        28.5,
        2.39,
        408,
        "MIT",
        "en",
        "clip",
        "timm/resnet50_clip.openai",
        "OpenAI ResNet-50",
    ),
)


def catalogue_entry(name: str) -> CatalogEntry | None:
    """The entry a name (or its open_clip pair, e.g. ``ViT-B-32:openai``) refers to."""
    try:
        key = resolve_model(name).key
    except ModelError:
        return None
    return next((e for e in CATALOG if resolve_model(e.name).key == key), None)


def family_of(name: str) -> str:
    """ "siglip" or "clip": SigLIP's sigmoid loss puts its cosines on another scale."""
    entry = catalogue_entry(name)
    if entry is not None:
        return entry.family
    return "siglip" if "siglip" in name.lower() else "clip"


#: Cold-query figures (time, peak memory) within this ratio of each other count as equal
#: in the Pareto comparison: runs on one machine vary about that much.
COLD_TOLERANCE = 1.15


def pareto_optimal(
    entries: tuple[CatalogEntry, ...] | list[CatalogEntry],
    cost: dict[str, float] | None = None,
    cold: dict[str, tuple[float, float]] | None = None,
) -> dict[str, bool]:
    """Which entries no other entry beats: at least as good on every figure both publish
    (Crossmodal-3600, Flickr30k, MSCOCO, CPU cost, download, sizes within about 15% counting
    as equal) and better on one.

    ``cost`` (ms per image measured here, by name) replaces Immich's published CPU figure
    where every entry has one, so the mark follows this machine when it is known.
    ``cold`` (a cold query's seconds and peak MB measured here, by name) adds those two
    figures, again only where every entry has them: a model never measured would
    otherwise be neither beaten nor beating on them."""
    measured = cost if cost and all(e.name in cost for e in entries) else None
    cold_here = cold if cold and all(e.name in cold for e in entries) else None

    def figures(e: CatalogEntry) -> list[float | None]:
        ms = measured[e.name] if measured else e.cpu_ms
        # Larger is better everywhere: costs are negated.
        return [
            e.xm3600,
            e.flickr_r1,
            e.coco_r1,
            None if ms is None else -ms,
            -round(math.log(e.download_mb) / math.log(1.15)),  # sizes within ~15% tie
        ]

    def cold_pairs(a: CatalogEntry, b: CatalogEntry) -> tuple[bool, bool]:
        """Whether ``a``'s cold query is at least as cheap as ``b``'s on both figures,
        and clearly cheaper on one: within 15% counts as equal, as runs vary that much."""
        if not cold_here:
            return True, False
        ours, theirs = cold_here[a.name], cold_here[b.name]
        as_good = all(x <= y * COLD_TOLERANCE for x, y in zip(ours, theirs, strict=True))
        better = any(x * COLD_TOLERANCE < y for x, y in zip(ours, theirs, strict=True))
        return as_good, better

    def beats(a: CatalogEntry, b: CatalogEntry) -> bool:
        pairs = [(x, y) for x, y in zip(figures(a), figures(b), strict=True) if None not in (x, y)]
        quality_shared = any(
            x is not None and y is not None
            for x, y in zip(figures(a)[:3], figures(b)[:3], strict=True)
        )
        cold_as_good, cold_better = cold_pairs(a, b)
        return (
            quality_shared
            and cold_as_good
            and all(x >= y for x, y in pairs)  # type: ignore[operator]
            and (cold_better or any(x > y for x, y in pairs))  # type: ignore[operator]
        )

    return {e.name: not any(beats(o, e) for o in entries if o is not e) for e in entries}


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model name: what open_clip needs, and the key the index stores.

    ``key`` identifies the embedding space; two specs with the same key produce
    interchangeable vectors, and an index never mixes vectors of different keys.
    """

    name: str
    kind: Literal["pretrained", "hf-hub", "local-dir"]
    arch: str
    pretrained: str | None = None

    @property
    def key(self) -> str:
        if self.kind == "pretrained":
            return f"{self.arch}:{self.pretrained}"
        return self.arch

    @property
    def collection_slug(self) -> str:
        """A name safe for a ChromaDB collection: readable, unique through a hash."""
        readable = re.sub(r"[^A-Za-z0-9._-]+", "-", self.key).strip("-._")[:48]
        digest = hashlib.sha1(self.key.encode("utf-8", "surrogateescape")).hexdigest()[:10]
        return f"{readable}-{digest}" if readable else digest


def resolve_model(name: str) -> ModelSpec:
    """Turn what the user typed into a :class:`ModelSpec` without importing torch."""
    raw = name.strip()
    if not raw:
        raise ModelError("The model name is empty; try --model ViT-B/32.")
    if raw in CLASSIC_MODELS:
        arch, tag = CLASSIC_MODELS[raw]
        return ModelSpec(raw, "pretrained", arch, tag)
    if raw.startswith("local-dir:"):
        folder = raw.removeprefix("local-dir:").strip()
        if not folder:
            raise ModelError("local-dir: needs a folder, e.g. --model local-dir:~/models/my-clip.")
        path = Path(folder).expanduser().resolve()
        return ModelSpec(raw, "local-dir", f"local-dir:{path}")
    if raw.startswith("hf-hub:"):
        repo = raw.removeprefix("hf-hub:").strip()
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
            raise ModelError(
                "hf-hub: needs ORG/REPO, e.g. hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K, "
                f"not {raw!r}."
            )
        return ModelSpec(raw, "hf-hub", f"hf-hub:{repo}")
    if ":" in raw:
        arch, _, tag = raw.partition(":")
        arch, tag = arch.strip().replace("/", "-"), tag.strip()
        if not arch or not tag:
            raise ModelError(
                f"Model names with a colon are MODEL:PRETRAINED pairs; {raw!r} lacks one side."
            )
        if tag == "openai" and not arch.endswith("-quickgelu"):
            arch = f"{arch}-quickgelu"  # every OpenAI checkpoint was trained with QuickGELU
        return ModelSpec(raw, "pretrained", arch, tag)
    raise ModelError(
        f"Unknown model {raw!r}. Use a name that `clipseek models` lists "
        f"({', '.join(e.name for e in CATALOG)}), another OpenAI name "
        f"({', '.join(n for n in CLASSIC_MODELS if n not in {e.name for e in CATALOG})}), "
        "an open_clip MODEL:PRETRAINED pair, hf-hub:ORG/REPO or local-dir:PATH."
    )
