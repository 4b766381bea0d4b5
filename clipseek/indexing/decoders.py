"""Decoder processes that hand images to the indexer through shared memory.

On a GPU machine the model outruns Python's image decoding: decoder *threads* share one
GIL, and on many cores they decode far slower than as many processes (docs/PERFORMANCE.md,
"GPU indexing"). Each worker process here reads, fingerprints,
decodes and resizes files with the same torch-free code as the thread path
(:func:`clipseek.photos.imaging.load_for_model` with
:func:`clipseek.models.preprocess.prepare_image`) and writes the uint8 result straight
into a slot of one shared-memory block. The indexer reads the slot in place (no pickling
of pixels, no copy until the batch is staged for the model) and releases the slot once
its batch is embedded.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clipseek.errors import ImageReadError
from clipseek.indexing.fingerprint import content_hash
from clipseek.models.preprocess import prepare_image
from clipseek.photos.imaging import load_for_model

if TYPE_CHECKING:
    import numpy as np

    from clipseek.models.base import PreprocessConfig


@dataclass(frozen=True, slots=True)
class Decoded:
    """What a worker reports for one file: the slot holds the pixels unless ``reason``."""

    slot: int
    width: int
    height: int
    digest: str | None
    reason: str | None = None
    #: Header metadata for the index (:meth:`clipseek.photos.metadata.PhotoMeta.metadata`).
    meta: dict[str, Any] | None = None


class SharedDecoder:
    """A pool of decoder processes writing into ``slots`` shared image buffers."""

    def __init__(
        self,
        workers: int,
        cfg: PreprocessConfig,
        slots: int,
        max_megapixels: float | None,
    ) -> None:
        from multiprocessing.shared_memory import SharedMemory

        import numpy as np

        height, width = cfg.size
        self.slots = slots
        self._shape = (slots, height, width, 3)
        self._shm = SharedMemory(create=True, size=max(1, slots * height * width * 3))
        self.images: np.ndarray = np.ndarray(self._shape, dtype=np.uint8, buffer=self._shm.buf)
        self._free = list(range(slots - 1, -1, -1))
        # spawn, not fork: the parent holds threads (Chroma's, the model loader's) that a
        # forked child would inherit in whatever state they were in.
        context = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(
            workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(self._shm.name, self._shape, cfg, max_megapixels),
        )

    @property
    def free(self) -> int:
        return len(self._free)

    def submit(
        self, files: Sequence[tuple[str, int, int, str | None]]
    ) -> tuple[list[int], Future[Any]]:
        """Decode ``files`` (path, size, mtime_ns, known digest) in one task; returns their
        slots."""
        slots = [self._free.pop() for _ in files]
        jobs = [(slot, *file) for slot, file in zip(slots, files, strict=True)]
        return slots, self._pool.submit(_decode_many, jobs)

    def image(self, slot: int) -> np.ndarray:
        """The decoded image in ``slot``, in place (valid until the slot is released)."""
        return self.images[slot]

    def release(self, slots: Sequence[int]) -> None:
        self._free.extend(slots)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        del self.images
        try:
            self._shm.close()
        except BufferError:
            pass  # a caller still holds a view: the mapping goes when the last view does
        finally:
            self._shm.unlink()


# --------------------------------------------------------------------------- in the workers

_worker: dict[str, Any] = {}


def _init_worker(
    name: str, shape: tuple[int, ...], cfg: PreprocessConfig, max_megapixels: float | None
) -> None:
    from multiprocessing.shared_memory import SharedMemory

    import numpy as np

    # One thread per decoder process: the pool already has a process per core.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    shm = SharedMemory(name=name)
    _worker.update(
        shm=shm,
        images=np.ndarray(shape, dtype=np.uint8, buffer=shm.buf),
        cfg=cfg,
        max_megapixels=max_megapixels,
    )


def _decode_many(jobs: Sequence[tuple[int, str, int, int, str | None]]) -> list[Decoded]:

    cfg = _worker["cfg"]
    images = _worker["images"]

    def prepare(image: Any) -> Any:
        return prepare_image(image, cfg)

    out = []
    for slot, path, size, mtime_ns, digest in jobs:
        if digest is None:
            try:
                digest = content_hash(path, size)
            except OSError:
                digest = None  # load_for_model reports why the file cannot be read
        try:
            array, dims = load_for_model(
                path, prepare, cfg.size, _worker["max_megapixels"], mtime_ns
            )
            images[slot] = array
        except ImageReadError as exc:
            out.append(Decoded(slot, 0, 0, digest, exc.reason or "unreadable"))
        except Exception as exc:  # a decoder bug on one file must not end the run
            out.append(Decoded(slot, 0, 0, digest, f"could not be read ({exc})"))
        else:
            out.append(Decoded(slot, dims.width, dims.height, digest, meta=dict(dims.meta)))
    return out
