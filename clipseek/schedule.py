"""How indexing shares the machine's cores between the model and the image decoders.

The indexer asks :func:`thread_plan` how to start and feeds :class:`ThreadTuner` what
each batch cycle measured; it never decides thread counts itself.
"""

from __future__ import annotations

from collections.abc import Sequence


def thread_plan(
    device: str,
    decode_workers: int | None = None,
    torch_threads: int | None = None,
    cores: int | None = None,
) -> tuple[int, int]:
    """(torch threads, decoder threads) to start indexing on ``device`` with.

    On a GPU the CPU only decodes, so every core gets a decoder. On a CPU the model
    and the decoders share the cores: decoders get a thread per core, and torch may use
    all cores, while :class:`ThreadTuner` moves it between half and all of them by
    measured throughput. Either number can be fixed by the caller.
    """
    from clipseek.models import physical_cores

    n = cores or physical_cores()
    # Each decoder may hold a full-size image (a 12 MP PNG is 36 MB decoded): a cap keeps
    # memory bounded on many-core machines, where a GPU still needs many decoders.
    threads, workers = (1, min(32, max(2, n))) if device != "cpu" else (n, min(16, max(2, n)))
    if torch_threads:
        threads = max(1, torch_threads)
    if decode_workers:
        workers = max(1, decode_workers)
    return threads, workers


class ThreadTuner:
    """Chooses torch's intra-op thread count batch by batch, from what it measures.

    Which is faster depends on the files and on the machine's other work, not only on
    its cores. 12 MP JPEGs keep the decoders busy: the model then waits for images and
    giving it more cores only takes them from the decoders. Small PNGs leave the model
    as the bottleneck, and all cores may win (docs/PERFORMANCE.md). So after each
    stretch of batches the tuner looks at how long the model waited for decoded images:
    little waiting means more threads may pay, and they are tried for ``window``
    batches; much waiting means fewer may. The faster of the two is kept, and the
    question is asked again after ``recheck`` batches.
    """

    def __init__(
        self,
        candidates: Sequence[int],
        window: int = 2,
        recheck: int = 24,
        waiting: float = 0.1,
    ) -> None:
        self.candidates = sorted({max(1, int(c)) for c in candidates})
        self.window = max(1, window)
        self.recheck = max(self.window, recheck)
        self.waiting = waiting
        self._current = self.candidates[0]
        self._base: int | None = None  # the setting a trial is compared against
        self._rates: dict[int, float] = {}
        self._images = 0
        self._seconds = 0.0
        self._waited = 0.0
        self._batches = 0
        self._needed = self.window
        # The first two batches are not representative: one fills the pipeline, and the
        # next finds images decoded ahead while the first was being filled.
        self._skip = 2
        self.history: list[tuple[int, float]] = []  # (threads, images/s) per measurement

    @property
    def threads(self) -> int:
        return self._current

    def record(self, images: int, seconds: float, waited: float = 0.0) -> int:
        """Account one batch cycle (``waited``: time the model spent waiting for decoded
        images); returns the thread count for the next batch."""
        if self._skip:
            self._skip -= 1
            return self._current
        self._images += images
        self._seconds += seconds
        self._waited += waited
        self._batches += 1
        if self._batches < self._needed:
            return self._current
        seconds = max(self._seconds, 1e-9)
        rate, waited_share = self._images / seconds, self._waited / seconds
        self._rates[self._current] = rate
        self.history.append((self._current, rate))
        self._images, self._seconds, self._waited, self._batches = 0, 0.0, 0.0, 0
        previous = self._current
        if self._base is not None:  # a trial ends: keep the faster
            base, self._base = self._base, None
            self._current = max((base, previous), key=lambda c: self._rates[c])
            self._needed = self.recheck
        else:
            index = self.candidates.index(previous)
            trial = None
            if waited_share < self.waiting and index + 1 < len(self.candidates):
                trial = self.candidates[index + 1]  # the model is the bottleneck
            elif waited_share >= self.waiting and index > 0:
                trial = self.candidates[index - 1]  # the decoders are
            if trial is None:
                self._needed = self.recheck
            else:
                self._base, self._current, self._needed = previous, trial, self.window
        self._skip = 1 if self._current != previous else 0
        return self._current
