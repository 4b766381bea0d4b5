"""What every runtime (torch, ONNX) offers the indexer and the searcher: the seam.

The indexer decodes on worker threads or processes and calls :meth:`Embedder.prepare`
there (Pillow only, no torch); the main loop hands a batch of prepared items to
:meth:`Embedder.encode_prepared`, and each runtime turns them into its input its own
way (a pinned, device-side normalisation on CUDA; numpy for ONNX Runtime). Searching
uses :meth:`Embedder.encode_texts` and :meth:`Embedder.encode_image`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from clipseek.models.catalogue import ModelSpec


@dataclass(frozen=True)
class PreprocessConfig:
    """The model's own preprocessing; nothing about it is hard-coded in clipseek."""

    size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    resize_mode: str
    fill_color: int = 0


@dataclass
class TextEncoding:
    vectors: np.ndarray
    truncated: list[bool] = field(default_factory=list)


class Embedder(Protocol):
    """A loaded model in some runtime; every vector it returns is L2-normalised float32."""

    spec: ModelSpec
    device: str  # "cpu", "cuda", "mps"
    precision: str  # "fp32", "bf16", "fp16", "int8"
    backend: str  # "torch" or "onnx"
    dim: int
    context_length: int
    preprocess_cfg: PreprocessConfig

    @property
    def image_size(self) -> tuple[int, int]: ...

    @property
    def threads(self) -> int:
        """CPU threads the runtime computes with now (the indexer's scheduler reads it)."""
        ...

    def set_threads(self, threads: int) -> None:
        """Let the runtime use ``threads`` CPU threads from the next call on; the indexer
        moves cores between the model and the decoders with this."""
        ...

    def prepare(self, image: Image.Image) -> Any:
        """The per-image preprocessing (resize, crop); cheap, thread-safe, no torch needed."""
        ...

    def encode_prepared(self, items: Sequence[Any]) -> np.ndarray:
        """Embed a batch of what :meth:`prepare` returned: N×dim."""
        ...

    def encode_image(self, image: Image.Image) -> np.ndarray:
        """Embed one decoded RGB image: dim."""
        ...

    def encode_texts(self, texts: Sequence[str]) -> TextEncoding: ...
