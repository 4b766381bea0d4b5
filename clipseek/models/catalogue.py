"""Model names: the classic OpenAI names, open_clip pairs, hf-hub: and local-dir:.

Resolved without torch, so that the index can be opened and checked (and the fast
ONNX path found) before anything heavy is imported.
"""

from __future__ import annotations

import hashlib
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
PREVIOUS_DEFAULTS: tuple[str, ...] = ("ViT-B/32",)


@dataclass(frozen=True)
class CatalogEntry:
    """A model worth suggesting, with published figures to choose by."""

    name: str
    recall_at_1: float | None  # Flickr30k text→image Recall@1, percent
    gflops: float | None  # image encoder GFLOPs per image
    download_mb: int  # approximate size of the weights file
    note: str


CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry("ViT-B/32", 58.8, 8.8, 605, "default: fast on a CPU"),
    CatalogEntry("ViT-B/16", 62.2, 35.1, 599, "better detail, 4× the compute"),
    CatalogEntry("ViT-L/14", 65.0, 162.0, 1711, "best OpenAI model; wants a GPU"),
    CatalogEntry("RN50", None, None, 408, "OpenAI ResNet-50"),
    CatalogEntry("ViT-B-32:laion2b_s34b_b79k", 66.8, 8.8, 605, "LAION-2B: best at B/32 cost"),
)


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
