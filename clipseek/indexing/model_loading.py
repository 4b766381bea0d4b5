"""Loading the model on a thread of its own while the run scans and decodes."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clipseek.models import Embedder


class BackgroundLoad:
    """Runs the model loader on its own thread; :meth:`result` waits and re-raises."""

    def __init__(self, load: Callable[[], Embedder]) -> None:
        self._future: Future[Embedder] = Future()
        # The loader imports numpy (through onnxruntime or torch) while this thread may import
        # it through chromadb; a first import of numpy on two threads at once can fail half
        # initialised ("cannot import name '__cpu_features__'"), so it happens here first.
        import numpy  # noqa: F401

        thread = threading.Thread(
            target=self._run, args=(load,), name="clipseek-model-load", daemon=True
        )
        thread.start()

    def _run(self, load: Callable[[], Embedder]) -> None:
        try:
            self._future.set_result(load())
        except BaseException as exc:
            self._future.set_exception(exc)

    def done(self) -> bool:
        return self._future.done()

    def result(self) -> Embedder:
        return self._future.result()


def warm_image_tower(model: Embedder) -> None:
    """Build an ONNX image session (about a second) while the first batch decodes, not
    after it: an ONNX model loads lazily, so its first encode used to wait for it.

    Not a daemon thread: a run that ends before its first batch waits for the session
    instead of tearing ONNX Runtime down under it (which aborts the process)."""
    warm = getattr(model, "warm", None)
    if warm is None:
        return
    # A session is built for one thread count: warm the one the run will start with (not
    # all cores while another process holds one), or the run builds a second session,
    # seconds more and a second copy of the weights (docs/PERFORMANCE.md, issue 26).
    from clipseek.indexing.threads import ThreadTuner, thread_plan

    cores = thread_plan("cpu")[0]
    if cores > 1:
        model.set_threads(ThreadTuner.likely_start(cores, model.precision))

    def run() -> None:
        with contextlib.suppress(Exception):  # the first encode meets it and reports it
            warm("image")

    threading.Thread(target=run, name="clipseek-warm-image").start()
