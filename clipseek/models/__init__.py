"""CLIP models: names, weights, hardware, and the runtimes that embed with them.

Layout:

- :mod:`~clipseek.models.catalogue`: model names, resolved without torch;
- :mod:`~clipseek.models.weights`: finding (or fetching) weights;
- :mod:`~clipseek.models.hardware`: devices, precisions, cores;
- :mod:`~clipseek.models.base`: the :class:`Embedder` seam every runtime offers;
- :mod:`~clipseek.models.preprocess`: the model's image preprocessing in Pillow alone;
- :mod:`~clipseek.models.torch_backend`: open_clip on torch (indexing, CUDA, export);
- :mod:`~clipseek.models.export`: the ONNX export of both towers, found without torch;
- :mod:`~clipseek.models.onnx_backend`: the exported towers on ONNX Runtime (queries);
- :mod:`~clipseek.models.tokenizer`: open_clip's tokenizer without open_clip or torch;
- :mod:`~clipseek.models.runtime`: which runtime a reader or an index run uses.

Every submodule imports torch, open_clip or onnxruntime inside functions only, so
importing this package costs nothing.
"""

from __future__ import annotations

from clipseek.models.base import Embedder, PreprocessConfig, TextEncoding
from clipseek.models.catalogue import (
    CATALOG,
    CLASSIC_MODELS,
    CatalogEntry,
    ModelSpec,
    resolve_model,
)
from clipseek.models.hardware import (
    cpu_has_native_bf16,
    physical_cores,
    resolve_device,
    resolve_precision,
    set_torch_threads,
)
from clipseek.models.torch_backend import ClipModel, load_model
from clipseek.models.weights import cached_weights, hf_cache_dir, weights_available

__all__ = [
    "CATALOG",
    "CLASSIC_MODELS",
    "CatalogEntry",
    "ClipModel",
    "Embedder",
    "ModelSpec",
    "PreprocessConfig",
    "TextEncoding",
    "cached_weights",
    "cpu_has_native_bf16",
    "hf_cache_dir",
    "load_model",
    "physical_cores",
    "resolve_device",
    "resolve_model",
    "resolve_precision",
    "set_torch_threads",
    "weights_available",
]
