"""How indexing shares the machine's cores between the model and the image decoders.

The indexer asks :func:`thread_plan` how to start and feeds :class:`ThreadTuner` what
each batch cycle measured; it never decides thread counts itself.

On a CPU every image costs the model ``M`` core-seconds and its decoder ``D``, so no
schedule can beat ``cores / (M + D)`` images per second. Two schedules come close:

* **time-sliced**: the model runs on every core while the decoders pause (the gate),
  and the decoders run on every core between batches. Each image then costs
  ``M / cores + D / cores`` of wall time, which *is* the ceiling as far as the model
  uses all cores well. It is the right start on an idle machine of any size.
* **split**: the model keeps ``k`` threads and the decoders run alongside it on the
  rest. It wins only where the model scales badly to all cores, and on a machine where
  other work holds some cores: an OpenMP (or ONNX Runtime) pool waits at a barrier
  after every operation for its slowest thread, so one thread sharing a core with
  someone else's process slows all of them (docs/PERFORMANCE.md: all-core torch ran
  slower than one thread under such load).

So the tuner starts time-sliced on the cores nobody else is using (read from
``/proc/stat`` over the time since the process started), checks the split after the
first batch against what that batch measured, follows other load as it comes and goes,
and now and then tries a neighbouring setting, keeping whichever is faster.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from clipseek.models import cpu_has_native_bf16, physical_cores


def thread_plan(
    device: str,
    decode_workers: int | None = None,
    torch_threads: int | None = None,
    cores: int | None = None,
) -> tuple[int, int]:
    """(model threads, decoder threads) to start indexing on ``device`` with.

    On a GPU the CPU only decodes, so every core gets a decoder. On a CPU the model
    and the decoders share the cores: decoders get a thread per core, and the model
    may use all of them, while :class:`ThreadTuner` decides how many it really gets.
    Either number can be fixed by the caller.
    """
    n = cores or physical_cores()
    # Each decoder may hold a full-size image (a 12 MP PNG is 36 MB decoded): a cap keeps
    # memory bounded on many-core machines, where a GPU still needs many decoders.
    threads, workers = (1, min(32, max(2, n))) if device != "cpu" else (n, min(16, max(2, n)))
    if torch_threads:
        threads = max(1, torch_threads)
    if decode_workers:
        workers = max(1, decode_workers)
    return threads, workers


def gated(threads: int, cores: int) -> bool:
    """Whether decoders pause while the model runs: only when it has every core, where a
    decoder would preempt one of its threads and stall the rest at the next barrier."""
    return threads >= cores


# --------------------------------------------------------------------------- other load


def _affinity() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def _busy_seconds(cpus: set[int] | None) -> float | None:
    """CPU seconds spent busy (user, system, interrupts, and time the hypervisor gave to
    other guests) on ``cpus`` since boot; None where /proc/stat is not there."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            lines = fh.read().splitlines()
        tick = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    total = 0
    seen = False
    for line in lines:
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *fields = line.split()
        try:
            cpu = int(name[3:])
        except ValueError:
            continue
        if cpus is not None and cpu not in cpus:
            continue
        values = [int(v) for v in fields[:8]] + [0] * (8 - len(fields[:8]))
        user, nice, system, _idle, _iowait, irq, softirq, steal = values
        total += user + nice + system + irq + softirq + steal
        seen = True
    return total / tick if seen else None


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as fh:
                out.extend(int(p) for p in fh.read().split())
        except (OSError, ValueError):
            continue
    return out


def _own_cpu_seconds() -> float:
    """CPU seconds of this process and of its live child processes (decoder processes
    are ours, not other load)."""
    total = time.process_time()
    try:
        tick = os.sysconf("SC_CLK_TCK")
    except (ValueError, AttributeError):
        return total
    pending = _children(os.getpid())
    seen: set[int] = set()
    while pending:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        except (OSError, ValueError, IndexError):
            continue
        pending.extend(_children(pid))
    return total


class LoadMeter:
    """How many cores' worth of CPU time *other* processes took, between readings.

    Busy time of the cores this process may use, from ``/proc/stat``, less this
    process's own CPU time. Where ``/proc/stat`` is missing (macOS, Windows) it reports
    nothing and the tuner relies on throughput alone.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        busy: Callable[[], float | None] | None = None,
        own: Callable[[], float] = _own_cpu_seconds,
    ) -> None:
        cpus = _affinity()
        self._clock = clock
        self._busy = busy or (lambda: _busy_seconds(cpus))
        self._own = own
        self._last = self._read()

    def _read(self) -> tuple[float, float, float] | None:
        busy = self._busy()
        if busy is None:
            return None
        return self._clock(), busy, self._own()

    @property
    def age(self) -> float:
        return self._clock() - self._last[0] if self._last else 0.0

    def other(self, min_interval: float = 0.2, *, keep: bool = False) -> float | None:
        """Other processes' load, in cores, since the previous reading (which this one
        replaces, unless ``keep``); None when unknown or when under ``min_interval``
        seconds passed."""
        if self._last is None:
            return None
        now = self._read()
        if now is None:
            return None
        wall = now[0] - self._last[0]
        if wall < min_interval:
            return None
        busy, own = now[1] - self._last[1], now[2] - self._last[2]
        if not keep:
            self._last = now
        return max(0.0, (busy - own) / wall)


#: Read at import, which is process start for `clipseek index`: the span until the model
#: is ready (imports, scanning, loading) tells how busy the machine is before any batch.
_PROCESS_METER = LoadMeter()


def other_load_now(meter: LoadMeter | None = None, *, keep: bool = False) -> float | None:
    """Other load, in cores, over the time since the process started (or a fresh
    0.1 s look in a long-lived process, where that span is stale); ``keep`` leaves the
    process's reading for the next look (which then spans the same start)."""
    meter = meter or _PROCESS_METER
    if 0.3 <= meter.age <= 120.0:
        return meter.other(keep=keep)
    fresh = LoadMeter()
    time.sleep(0.1)
    return fresh.other(min_interval=0.05)


def cores_free(cores: int, other: float | None) -> int:
    """Cores left for us when others use ``other`` cores: a core counts as taken from
    0.6 of one, below which sharing it costs less than leaving it idle."""
    if not other:
        return cores
    return max(1, min(cores, cores - math.floor(other + 0.4)))


# --------------------------------------------------------------------------- cost model


class _Sized(Protocol):
    path: str
    size: int


@dataclass(frozen=True)
class Workload:
    """What the scan saw, for a guess at decoding cost before anything is decoded."""

    median_bytes: int = 0
    jpeg_share: float = 1.0

    @classmethod
    def of(cls, files: Sequence[_Sized], sample: int = 2000) -> Workload:
        if not files:
            return cls()
        step = max(1, len(files) // sample)
        picked = files[::step]
        jpeg = sum(f.path.lower().endswith((".jpg", ".jpeg", ".jfif")) for f in picked)
        return cls(int(statistics.median(f.size for f in picked)), jpeg / len(picked))

    def decode_seconds(self) -> float:
        """Core-seconds to hash, decode and resize one image, from its size: JPEGs are
        decoded at a reduced scale, other formats in full, costing more per byte (the
        coefficients fit docs/PERFORMANCE.md, "Why the JPEG target is missed")."""
        mb = self.median_bytes / 1e6
        jpeg = 0.004 + 0.013 * mb
        other = 0.003 + 0.030 * mb
        return self.jpeg_share * jpeg + (1 - self.jpeg_share) * other


def model_seconds_guess(precision: str, native_bf16: bool) -> float:
    """Core-seconds per image of a ViT-B/32-sized model before one batch is measured:
    a prior only, replaced by the first batch's measurement."""
    if precision in ("bf16", "fp16"):
        return 0.03 if native_bf16 else 0.5
    return 0.08 if native_bf16 else 0.16  # bf16-capable CPUs have AVX-512 for fp32 too


#: Assumed scaling of the model's speed with threads, t^SCALING: sublinear, as ViT-B/32
#: scales at batch 32 (docs/PERFORMANCE.md). Used only to decide which setting deserves a
#: trial; the trial's measurement decides.
SCALING = 0.85


def predicted_seconds(threads: int, cores: int, model_all: float, decode: float) -> float:
    """Wall seconds per image with ``threads`` model threads, given the model's wall
    seconds per image on all ``cores`` and the decode core-seconds per image."""
    if threads >= cores:
        return model_all + decode / cores  # time-sliced: both use every core in turn
    model = model_all * (cores / threads) ** SCALING
    return max(model, decode / (cores - threads))  # split: both at once, slower one rules


def best_threads(candidates: Iterable[int], cores: int, model_all: float, decode: float) -> int:
    """The candidate predicted fastest; ties go to more model threads."""
    return min(
        candidates,
        key=lambda t: (round(predicted_seconds(t, cores, model_all, decode), 6), -t),
    )


def _start(
    cores: int,
    precision: str,
    files: Sequence[_Sized],
    native_bf16: bool | None,
    other_load: float | None,
) -> tuple[int, int, float, float]:
    """(start threads, free cores, model wall seconds per image on all cores, decode
    core-seconds per image) for a tuner on ``cores``."""
    if native_bf16 is None:
        native_bf16 = cpu_has_native_bf16()
    free = cores_free(cores, other_load)
    decode = Workload.of(files).decode_seconds() if files else 0.03
    model_all = model_seconds_guess(precision, native_bf16) / cores
    allowed = [c for c in candidate_threads(cores) if c <= free]
    return best_threads(allowed, cores, model_all, decode), free, model_all, decode


# --------------------------------------------------------------------------- the tuner


def candidate_threads(cores: int) -> list[int]:
    """Model thread counts worth trying: all, each step down near the top (where other
    load takes a core or two), then halves."""
    picks = {cores, cores - 1, cores - 2, (3 * cores) // 4, cores // 2, cores // 4, 1}
    return sorted(c for c in picks if 1 <= c <= cores)


class ThreadTuner:
    """Chooses the model's thread count batch by batch, from what it measures.

    ``record`` takes each batch cycle's images, wall seconds, the time the model loop
    waited for decoded images and (when known) the seconds inside the model, and
    returns the thread count for the next batch. Decisions, in order:

    1. other load: when other processes take a core (see :func:`cores_free`), the model
       gives it up at once rather than stall at every barrier; when they leave, more
       threads are tried again;
    2. after the first batch, its measured model and decode costs pick the setting
       :func:`predicted_seconds` favours, which is tried if it differs;
    3. every ``recheck`` batches a neighbouring setting is tried for ``window``
       batches; a trial that loses makes the next one wait twice as long (up to 8×).

    A trial is kept only if it beats the setting before it by ``margin``.
    """

    def __init__(
        self,
        candidates: Sequence[int],
        cores: int | None = None,
        start: int | None = None,
        window: int = 2,
        recheck: int = 24,
        waiting: float = 0.1,
        margin: float = 0.03,
        meter: LoadMeter | None = None,
    ) -> None:
        self.candidates = sorted({max(1, int(c)) for c in candidates})
        self.cores = cores or self.candidates[-1]
        self.window = max(1, window)
        self.recheck = max(self.window, recheck)
        self.waiting = waiting
        self.margin = margin
        self._meter = meter
        self._current = start if start in self.candidates else self.candidates[-1]
        self._limit = self.candidates[-1]  # most threads the other load leaves us
        self._base: int | None = None  # the setting a trial is compared against
        self._base_rate = 0.0
        self._images = 0
        self._seconds = 0.0
        self._waited = 0.0
        self._model = 0.0
        self._model_known = True
        self._batches = 0
        self._needed = 1  # the first batch is measured on its own (decision 2)
        self._first = True
        self._backoff = 1
        self._probe_up = False
        self._skip = 0
        self.rates: dict[int, float] = {}
        self.history: list[tuple[int, float]] = []  # (threads, images/s) per measurement
        self.reasons: list[str] = []  # why each change was made, for benchmarks and tests
        #: Seconds a change of thread count costs (an ONNX session build; 0 for torch) and
        #: images still to embed (set by the indexer): a trial must be able to repay it.
        self.switch_cost = 0.0
        self.remaining: int | None = None

    @classmethod
    def for_cpu(
        cls,
        cores: int,
        precision: str = "fp32",
        files: Sequence[_Sized] = (),
        native_bf16: bool | None = None,
        other_load: float | None = -1.0,
        meter: LoadMeter | None = None,
    ) -> ThreadTuner:
        """A tuner for ``cores`` CPU cores, starting where the machine and the files
        say: time-sliced on the cores other work leaves free, unless the predicted
        costs favour a split. ``other_load`` -1 means measure it."""
        if other_load is not None and other_load < 0:
            other_load = other_load_now()
        start, free, model_all, decode = _start(cores, precision, files, native_bf16, other_load)
        candidates = candidate_threads(cores)
        tuner = cls(candidates, cores=cores, start=start, meter=meter or LoadMeter())
        tuner._limit = free
        tuner.reasons.append(
            f"start {start} of {cores} threads: other load {other_load or 0:.1f} cores, "
            f"guessed model {model_all * cores * 1000:.0f} core-ms, "
            f"decode {decode * 1000:.0f} core-ms per image"
        )
        return tuner

    @classmethod
    def likely_start(cls, cores: int, precision: str = "fp32") -> int:
        """The thread count :meth:`for_cpu` would start ``cores`` with now, before the
        files are known (their decode cost is guessed) and without using up the load
        reading it will take: an ONNX session warmed for it is the one the run uses (a
        session is built for one thread count, and each holds the weights)."""
        other = other_load_now(keep=True)
        return _start(cores, precision, (), None, other)[0]

    @property
    def threads(self) -> int:
        return self._current

    @property
    def gated(self) -> bool:
        return gated(self._current, self.cores)

    def record(
        self,
        images: int,
        seconds: float,
        waited: float = 0.0,
        model_seconds: float | None = None,
    ) -> int:
        """Account one batch cycle (``waited``: time the model spent waiting for decoded
        images; ``model_seconds``: time inside the model); returns the thread count for
        the next batch."""
        other = self._meter.other() if self._meter is not None else None
        if other is not None:
            free = cores_free(self.cores, other)
            if free < self._current:
                return self._move(self._fit(free), f"other load {other:.1f} cores", free)
            if free > self._limit:
                self._limit = free
                if self._base is None and self._current < free:
                    # Others left: try more threads soon instead of after a long backoff.
                    self._backoff, self._probe_up = 1, True
                    self._needed = min(self._needed, self._batches + self.window)
        if self._skip:
            self._skip -= 1
            return self._current
        self._images += images
        self._seconds += seconds
        self._waited += waited
        if model_seconds is None:
            self._model_known = False
        else:
            self._model += model_seconds
        self._batches += 1
        if self._batches < self._needed:
            return self._current
        seconds = max(self._seconds, 1e-9)
        rate, waited_share = self._images / seconds, self._waited / seconds
        per_image = seconds / max(1, self._images)
        model_per_image = self._model / max(1, self._images) if self._model_known else None
        self.rates[self._current] = rate
        self.history.append((self._current, rate))
        self._images, self._seconds, self._waited, self._model = 0, 0.0, 0.0, 0.0
        self._model_known, self._batches = True, 0
        previous = self._current

        if self._base is not None:  # a trial ends: keep the faster
            base, base_rate = self._base, self._base_rate
            self._base = None
            if rate > base_rate * (1 + self.margin):
                self._backoff = 1
                self.reasons.append(f"kept {previous}: {rate:.2f} vs {base_rate:.2f} img/s")
            else:
                self._current = base
                self._backoff = min(8, self._backoff * 2)
                self.reasons.append(f"back to {base}: {rate:.2f} vs {base_rate:.2f} img/s")
            self._needed = self.recheck * self._backoff
        else:
            trial = self._trial(per_image, waited_share, model_per_image)
            self._first = False
            if trial is not None and trial != previous and not self._repays(rate):
                self.reasons.append(
                    f"no trial of {trial}: {self.remaining} images left do not repay "
                    f"{self.switch_cost:.1f} s of switching"
                )
                trial = None
            if trial is None or trial == previous:
                self._needed = self.recheck * self._backoff
            else:
                self._base, self._base_rate = previous, rate
                self._current, self._needed = trial, self.window
                self.reasons.append(f"try {trial} (from {previous} at {rate:.2f} img/s)")
        self._skip = 1 if self._current != previous and not gated(self._current, self.cores) else 0
        return self._current

    # -- decisions

    #: A trial is only started when the rest of the run takes this many times its switch cost.
    SWITCH_PAYBACK = 10.0

    def _repays(self, rate: float) -> bool:
        if not self.switch_cost or self.remaining is None:
            return True
        return self.remaining / max(rate, 1e-9) > self.SWITCH_PAYBACK * self.switch_cost

    def _fit(self, free: int) -> int:
        return max([c for c in self.candidates if c <= free] or [self.candidates[0]])

    def _move(self, threads: int, why: str, free: int) -> int:
        self._limit = free
        self._base = None
        self._images, self._seconds, self._waited, self._model = 0, 0.0, 0.0, 0.0
        self._model_known, self._batches = True, 0
        self._needed, self._backoff, self._probe_up = self.window, 1, False
        if threads != self._current:
            self.reasons.append(f"{why}: {self._current} → {threads} threads")
            self._current = threads
            self._skip = 0 if gated(threads, self.cores) else 1
        return self._current

    def _trial(
        self, per_image: float, waited_share: float, model_per_image: float | None
    ) -> int | None:
        allowed = [c for c in self.candidates if c <= self._limit]
        if not allowed:
            return None
        index = allowed.index(self._current) if self._current in allowed else len(allowed) - 1
        up = allowed[index + 1] if index + 1 < len(allowed) else None
        down = allowed[index - 1] if index > 0 else None
        if self._probe_up:
            self._probe_up = False
            if up is not None:
                return allowed[-1]  # straight back to what the others left free
        if gated(self._current, self.cores) and model_per_image is not None:
            # Time-sliced: the model's share is measured, the rest is decoding on all cores.
            decode = max(0.0, per_image - model_per_image) * self.cores
            best = best_threads(allowed, self.cores, model_per_image, decode)
            if best != self._current:
                return best
            return None if self._first else down
        if self._first:
            return up if waited_share < self.waiting else None
        # Split: little waiting means the model is the bottleneck and more threads may
        # pay; much waiting means the decoders are, and fewer may.
        return up if waited_share < self.waiting else down
