"""The fast path (ONNX Runtime on an export) held to torch, as every family's tests hold it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clipseek.testing import MULTILINGUAL_SAMPLES, photo_like


def assert_fast_path_agrees(torch_model: Any, fast: Any, texts: Sequence[str] = ()) -> None:
    """Texts (by default samples in many scripts, an empty one and one cut at the context
    length) and pictures of several sizes: the same truncation, cosine ≥ 0.9999 between
    torch and ONNX, and the same rankings."""
    import numpy as np

    texts = list(texts) or [*MULTILINGUAL_SAMPLES[:8], "", "x " * 80]
    a, b = torch_model.encode_texts(texts), fast.encode_texts(texts)
    assert a.truncated == b.truncated
    assert float((a.vectors * b.vectors).sum(1).min()) >= 0.9999
    images = [photo_like((160 + 16 * s, 120), seed=s) for s in range(4)]
    ia = np.stack([torch_model.encode_image(i) for i in images])
    ib = np.stack([fast.encode_image(i) for i in images])
    assert float((ia * ib).sum(1).min()) >= 0.9999
    assert (np.argsort(-(a.vectors @ ia.T), 1) == np.argsort(-(b.vectors @ ib.T), 1)).all()
