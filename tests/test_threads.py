"""The schedule that shares a CPU's cores between the model and the decoders.

Batch cycles are simulated from per-image costs, so nothing here depends on this
machine's speed or load; the indexer test only checks what the indexer hands over.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from clipseek.engine import Engine
from clipseek.indexing import pipeline as ix
from clipseek.indexing import threads as schedule


@dataclass
class _File:
    path: str
    size: int


class _Meter:
    """Other load, in cores, as a test sets it."""

    def __init__(self, value: float | None = 0.0) -> None:
        self.value = value

    def other(self) -> float | None:
        return self.value


def _tuner(cores: int = 2, load: float = 0.0, meter: _Meter | None = None):
    files = [_File(f"/p/{i}.jpg", 2_300_000) for i in range(20)]
    return schedule.ThreadTuner.for_cpu(
        cores, "fp32", files, native_bf16=False, other_load=load, meter=meter or _Meter()
    )


def _machine(model_all: float, decode: float, cores: int = 2, split: dict | None = None):
    """Seconds per image, model seconds per image and waited seconds per image at each
    thread count: time-sliced on all cores, or as ``split`` says."""
    split = split or {}

    def cycle(threads: int) -> tuple[float, float, float]:
        if threads >= cores:
            return model_all + decode / cores, model_all, decode / cores
        return split[threads]

    return cycle


def _drive(tuner, cycle, n: int, images: int = 32, meter=None, load=None) -> list[int]:
    used = []
    for i in range(n):
        if meter is not None and load is not None:
            meter.value = load(i)
        used.append(tuner.threads)
        per_image, model, waited = cycle(tuner.threads)
        tuner.record(images, per_image * images, waited * images, model * images)
    return used


def test_idle_machine_starts_time_sliced_on_every_core() -> None:
    tuner = _tuner(cores=2)
    assert tuner.threads == 2 and tuner.gated
    big = _tuner(cores=16)
    assert big.threads == 16 and big.gated
    # bf16-capable CPUs, PNGs: still every core, since the model scales well enough.
    pngs = [_File(f"/p/{i}.png", 400_000) for i in range(9)]
    bf16 = schedule.ThreadTuner.for_cpu(
        2, "bf16", pngs, native_bf16=True, other_load=0.0, meter=_Meter()
    )
    assert bf16.threads == 2


def test_a_busy_core_is_left_to_its_owner_from_the_start() -> None:
    tuner = _tuner(cores=2, load=1.0)
    assert tuner.threads == 1 and not tuner.gated
    assert _tuner(cores=2, load=0.3).threads == 2  # a little load: still every core
    assert _tuner(cores=8, load=2.0).threads == 6


def test_first_batch_measurement_keeps_time_slicing_when_it_is_best() -> None:
    tuner = _tuner()
    # 12 MP JPEGs, fp32 on AVX2: model 81 ms per image on 2 cores, decode 34 core-ms.
    used = _drive(tuner, _machine(0.081, 0.034, split={1: (0.15, 0.15, 0.0)}), 30)
    assert used[:25] == [2] * 25  # no trial after the first batch: nothing predicted faster
    # Then a periodic look at one thread fewer, slower here, so back to two.
    assert used[25:] == [1, 1, 1, 2, 2]
    assert tuner.reasons[-1].startswith("back to 2")


def test_first_batch_measurement_tries_the_split_it_predicts_and_keeps_it_if_faster() -> None:
    tuner = _tuner()
    # A model cheap next to decoding: a split (1 model thread, 1 decoder) is predicted
    # faster; here it really is, and it is kept.
    cycle = _machine(0.010, 0.018, split={1: (0.015, 0.015, 0.0)})
    used = _drive(tuner, cycle, 8)
    assert used[:2] == [2, 1] and used[-1] == 1
    assert any(r.startswith("kept 1") for r in tuner.reasons)


def test_a_losing_trial_goes_back_and_waits_longer_before_the_next() -> None:
    tuner = _tuner()
    tuner.recheck = 4
    cycle = _machine(0.010, 0.018, split={1: (0.030, 0.030, 0.0)})  # the split is slower
    used = _drive(tuner, cycle, 6)
    assert used == [2, 1, 1, 1, 2, 2]
    assert tuner.reasons[-1].startswith("back to 2")
    # The next trial waits 2 × recheck batches (backoff) on two threads, not recheck:
    # two of those 8 ran above.
    assert _drive(tuner, cycle, 7) == [2] * 6 + [1]


def test_other_load_takes_a_core_at_once_and_gives_it_back_when_it_leaves() -> None:
    meter = _Meter(0.0)
    tuner = _tuner(meter=meter)
    slow_split = {1: (0.15, 0.15, 0.0)}  # one model thread: slower than both when idle
    cycle = _machine(0.081, 0.034, split=slow_split)

    def load(i: int) -> float:
        return 1.0 if 3 <= i < 8 else 0.0

    used = _drive(tuner, cycle, 16, meter=meter, load=load)
    assert used[:4] == [2, 2, 2, 2]  # the batch that saw the load ran before it was seen
    assert used[4:8] == [1, 1, 1, 1]
    assert any("other load" in r for r in tuner.reasons)
    assert used[-1] == 2  # back on every core soon after the load left, and kept
    assert any(r.startswith("kept 2") for r in tuner.reasons)


def test_unknown_model_time_still_tunes_by_throughput() -> None:
    tuner = _tuner(cores=2)
    tuner.recheck = 3
    for _ in range(6):
        tuner.record(32, 3.2, 0.5)  # no model_seconds: the old indexer's call
    assert tuner.threads in (1, 2) and tuner.history


def test_load_meter_counts_only_other_processes() -> None:
    clock, busy, own = [0.0], [10.0], [1.0]
    meter = schedule.LoadMeter(clock=lambda: clock[0], busy=lambda: busy[0], own=lambda: own[0])
    clock[0], busy[0], own[0] = 2.0, 13.0, 2.0  # 3 core-s busy, 1 of them ours, in 2 s
    assert meter.other() == pytest.approx(1.0)
    clock[0] = 2.1
    assert meter.other() is None  # too short to say; the reading is kept
    clock[0], busy[0], own[0] = 4.0, 15.0, 4.0  # all of it ours
    assert meter.other() == pytest.approx(0.0)
    nothing = schedule.LoadMeter(busy=lambda: None)
    assert nothing.other() is None


def test_cores_free_counts_a_core_taken_from_most_of_one() -> None:
    assert schedule.cores_free(2, None) == 2
    assert schedule.cores_free(2, 0.5) == 2
    assert schedule.cores_free(2, 0.7) == 1
    assert schedule.cores_free(2, 5.0) == 1
    assert schedule.cores_free(16, 2.7) == 13


def test_workload_guess_from_file_sizes() -> None:
    photos = schedule.Workload.of([_File(f"/p/{i}.JPG", 2_300_000) for i in range(5)])
    assert photos.jpeg_share == 1.0 and photos.median_bytes == 2_300_000
    assert 0.02 < photos.decode_seconds() < 0.05  # ≈34 ms measured for a 12 MP photo
    pngs = schedule.Workload.of([_File(f"/p/{i}.png", 10_000_000) for i in range(3)])
    assert pngs.jpeg_share == 0.0 and pngs.decode_seconds() > photos.decode_seconds()


def test_prediction_compares_time_slicing_with_a_split() -> None:
    # Model-heavy: time-slicing on both cores wins.
    assert schedule.best_threads([1, 2], 2, model_all=0.081, decode=0.034) == 2
    # Decode-heavy with a fast model: still time-sliced, decoders get both cores in turn.
    assert schedule.best_threads([1, 2], 2, model_all=0.010, decode=0.040) == 2
    # Balanced so one thread each keeps both busy: the split.
    assert schedule.best_threads([1, 2], 2, model_all=0.010, decode=0.018) == 1
    assert schedule.candidate_threads(2) == [1, 2]
    assert schedule.candidate_threads(16) == [1, 4, 8, 12, 14, 15, 16]


def test_indexer_feeds_the_tuner_and_obeys_it(
    engine: Engine, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import clipseek.models

    monkeypatch.setattr(clipseek.models, "physical_cores", lambda: 2)
    calls: list[tuple[int, float | None]] = []
    set_to: list[int] = []
    real_record = schedule.ThreadTuner.record

    def spy(self, images, seconds, waited=0.0, model_seconds=None):
        calls.append((images, model_seconds))
        result = real_record(self, images, seconds, waited, model_seconds)
        set_to.append(result)
        return result

    monkeypatch.setattr(schedule.ThreadTuner, "record", spy)
    summary = engine.index([photos], ix.IndexOptions(batch_size=4))
    assert summary.embedded == 12
    assert [n for n, _ in calls] == [4, 4, 4]
    assert all(m is not None and m > 0 for _, m in calls)
    assert summary.torch_threads == set_to[-1]


def test_a_costly_thread_switch_is_not_tried_near_the_end_of_a_run() -> None:
    """ONNX Runtime builds a new session for another thread count (about a second): a
    trial the rest of the run cannot repay is skipped; a long run still tries it."""
    from clipseek.indexing.threads import ThreadTuner

    def first_decision(remaining: int) -> tuple[int, list[str]]:
        tuner = ThreadTuner([1, 2], cores=2, start=1)
        tuner.switch_cost, tuner.remaining = 1.0, remaining
        # One thread, little waiting for decoders: the model is the bottleneck, so more
        # threads are worth a trial.
        return tuner.record(32, 3.2, waited=0.0), tuner.reasons

    threads, reasons = first_decision(remaining=18)  # 1.8 s of work left
    assert threads == 1 and "do not repay" in reasons[-1]
    threads, reasons = first_decision(remaining=2000)
    assert threads == 2 and reasons[-1].startswith("try 2")
