"""The ONNX Runtime runtime: the exported towers, with no torch and no open_clip.

This is what a query, the app and the server run when an export is ready (see
:mod:`clipseek.models.export`): importing onnxruntime costs a tenth of importing torch,
and a text query loads only the text tower. Image preprocessing is
:mod:`clipseek.models.preprocess` (Pillow and numpy, equal to open_clip's transform).

ONNX Runtime fixes a session's intra-op thread count when the session is created, so
:meth:`OnnxModel.set_threads` only records the wish: the next encode uses (and keeps) a
session made for that count. One session per tower is kept, and dropped before the next
is built: each holds its own copy of the weights, and two of ViT-B/32's image tower took
a 50-file index run from 590 to 930 MB (docs/PERFORMANCE.md, issue 26). Going back to a
thread count costs a build again, which :attr:`OnnxModel.thread_switch_seconds` counts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from clipseek.errors import ModelError
from clipseek.models.base import PreprocessConfig, TextEncoding
from clipseek.models.catalogue import ModelSpec
from clipseek.models.export import (
    IMAGE_FILE,
    IMAGE_INT8_FILE,
    TEXT_FILE,
    Export,
    ensure_int8,
    find_export,
)
from clipseek.models.hardware import physical_cores

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image


#: Sessions kept per tower (each with its own copy of the weights).
_SESSIONS_PER_TOWER = 1


def _normalised(features: np.ndarray) -> np.ndarray:
    import numpy as np

    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=-1, keepdims=True)
    return (features / np.maximum(norms, np.float32(1e-12))).astype(np.float32, copy=False)


class OnnxModel:
    """An :class:`~clipseek.models.base.Embedder` over an export's ONNX files."""

    backend = "onnx"
    device = "cpu"

    def __init__(
        self, spec: ModelSpec, export: Export, precision: str = "fp32", *, prepack: bool = True
    ) -> None:
        self.spec = spec
        #: Whether sessions repack the weights for faster matrix products when built.
        #: Worth it for indexing and a busy server; a query, or the app's first answer,
        #: waits for the session instead: skipping it builds a session several times
        #: faster for a little more time per encode (docs/PERFORMANCE.md, "The fast path").
        self.prepack = prepack
        self.export = export
        self.precision = precision
        self.dim = export.dim
        self.context_length = export.context_length
        self.preprocess_cfg: PreprocessConfig = export.preprocess
        self._dynamic_text = bool(export.manifest.get("text_dynamic_length"))
        self._lock = threading.Lock()
        self._sessions: dict[tuple[str, int], Any] = {}
        self._threads = _default_threads()
        self._tokenizer: Any = None
        self._table: Any = None  # a hub-tokenizer family's memory-mapped token table
        self._tokenizer_lock = threading.Lock()

    # -- sessions and threads

    @property
    def image_size(self) -> tuple[int, int]:
        return self.preprocess_cfg.size

    @property
    def threads(self) -> int:
        return self._threads

    #: What trying another thread count may cost: ONNX Runtime fixes its threads per
    #: session, so the trial builds a session and, if it loses, the way back builds one
    #: again (a build is about a second for ViT-B/32; measured at each build).
    thread_switch_seconds = 2.0

    def set_threads(self, threads: int) -> None:
        self._threads = max(1, int(threads))

    def _session(self, tower: str) -> Any:
        key = (tower, self._threads)
        session = self._sessions.pop(key, None)
        if session is None:
            same_tower = [k for k in self._sessions if k[0] == tower]
            for old in same_tower[: len(same_tower) - _SESSIONS_PER_TOWER + 1]:
                del self._sessions[old]  # the least recently used, before the next is built
            started = time.perf_counter()
            session = load_session(self._file(tower), self._threads, prepack=self.prepack)
            self.thread_switch_seconds = 2 * (time.perf_counter() - started)
        self._sessions[key] = session  # (re)inserted last: the dict keeps use order
        return session

    def _file(self, tower: str) -> str:
        if tower == "text":
            return str(self.export.path(TEXT_FILE))
        if self.precision == "int8":
            return str(ensure_int8(self.export))
        return str(self.export.path(IMAGE_FILE))

    def warm(self, tower: str = "text") -> None:
        """Load a tower's session now (e.g. on a thread while chromadb imports)."""
        with self._lock:
            self._session(tower)
            if tower == "text":
                self._tokenize_setup()

    # -- images

    def prepare(self, image: Image.Image) -> Any:
        # Lazy: a text query does not import the image preprocessing.
        from clipseek.models.preprocess import pil_supported, prepare_image

        if not pil_supported(self.preprocess_cfg):
            raise ModelError(
                f"{self.spec.name} resizes images in a way the ONNX path cannot reproduce; "
                "use --backend torch."
            )
        return prepare_image(image, self.preprocess_cfg)

    def encode_prepared(self, items: Sequence[Any]) -> np.ndarray:
        # Lazy: a text query does not import the image preprocessing.
        from clipseek.models.preprocess import normalise_batch

        if not items:
            raise ValueError("an empty batch")
        pixels = normalise_batch(list(items), self.preprocess_cfg)
        with self._lock:
            session = self._session("image")
            (features,) = session.run(None, {"pixels": pixels})
        return _normalised(features)

    def encode_image(self, image: Image.Image) -> np.ndarray:
        return self.encode_prepared([self.prepare(image)])[0]

    # -- texts

    def _tokenize_setup(self) -> Any:
        # Its own lock: a query's thread may build it while the warm-up thread holds the
        # session lock, and two threads must not both build it.
        with self._tokenizer_lock:
            if self._tokenizer is None:
                record = dict(self.export.manifest["tokenizer"])
                vocab = self.export.path(str(record.pop("file")))
                if record.pop("kind", "clip-bpe") == "hub":
                    import numpy as np

                    from clipseek.models.export import TOKEN_TABLE_FILE
                    from clipseek.models.tokenizer import HubTokenizer

                    # Mapped, not read: a query touches its own tokens' rows only.
                    self._table = np.load(self.export.path(TOKEN_TABLE_FILE), mmap_mode="r")
                    self._tokenizer = HubTokenizer.from_export(vocab, self.context_length, **record)
                else:
                    from clipseek.models.tokenizer import ClipTokenizer

                    self._tokenizer = ClipTokenizer(vocab, self.context_length)
            return self._tokenizer

    def token_count(self, text: str) -> int:
        return int(self._tokenize_setup().token_count(text))

    def encode_texts(self, texts: Sequence[str]) -> TextEncoding:
        tokens, truncated = self._tokenize_setup()(list(texts))
        if self._dynamic_text and len(texts):
            # The tower is causal and read at the end marker: positions after the last
            # one cannot change the result, so a short query runs a few positions only.
            length = int(tokens.argmax(axis=-1).max()) + 1
            tokens = tokens[:, :length]
        if self._table is not None:  # the graph starts after the token lookup
            import numpy as np

            feed = {"embeddings": np.ascontiguousarray(self._table[tokens], dtype=np.float32)}
        else:
            feed = {"tokens": tokens}
        with self._lock:
            session = self._session("text")
            (features,) = session.run(None, feed)
        return TextEncoding(_normalised(features), truncated)


def _default_threads() -> int:

    return physical_cores()


def load_session(path: str, threads: int, *, prepack: bool = True) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if not prepack:
        options.add_session_config_entry("session.disable_prepacking", "1")
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


def load_onnx_model(
    spec: ModelSpec, precision: str = "fp32", *, prepack: bool = True
) -> OnnxModel | None:
    """The fast path for ``spec`` if its export is ready, else None (never imports torch)."""
    export = find_export(spec)
    if export is None:
        return None
    return OnnxModel(spec, export, precision, prepack=prepack)


__all__ = ["IMAGE_INT8_FILE", "OnnxModel", "load_onnx_model", "load_session"]
