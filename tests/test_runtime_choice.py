"""The CPU runtime is chosen for the whole run (issue 26): start-up counts, not only speed.

Rates and start-up costs are the ones a machine remembers (``backend-choice.json``); here
they are set by hand, and the CPU's bf16 support is monkeypatched both ways, so these
tests decide the same on any machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clipseek.models import hardware, runtime

#: Figures of the kind measured on a 2-core bf16 CPU (issue 26: ONNX Runtime fp32 15.2
#: img/s, torch bf16 26.2; torch and open_clip take seconds to import).
BF16_CPU = {
    "backend": "torch",
    "precision": "bf16",
    "torch_precision": "bf16",
    "onnx_fp32_images_per_s": 15.2,
    "torch_bf16_images_per_s": 26.2,
    "torch_import_s": 4.5,
    "torch_load_s": 0.8,
    "onnx_import_s": 0.4,
    "onnx_session_s": 0.9,
}


def plan(choice: dict[str, Any], files: int | None, **imported: bool) -> str:
    flags = {"torch_imported": False, "onnx_imported": False, **imported}
    return runtime.plan_cpu_runtime(choice, files, **flags)


def test_on_a_bf16_cpu_a_small_run_takes_onnx_and_a_large_one_torch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: True)
    # 50 files: ONNX 1.3 + 3.3 s against torch 5.3 + 1.9 s.
    assert plan(BF16_CPU, 50) == "onnx"
    # 500 files: ONNX 1.3 + 32.9 s against torch 5.3 + 19.1 s.
    assert plan(BF16_CPU, 500) == "torch"
    # The break-even, about 100 files here, moves with the figures: where torch is already
    # imported (the app, the server), even a small run is worth it.
    assert plan(BF16_CPU, 50, torch_imported=True) == "torch"
    slower_start = {**BF16_CPU, "torch_import_s": 30.0}
    assert plan(slower_start, 500) == "onnx"
    # An unknown amount of work keeps the faster tower.
    assert plan(BF16_CPU, None) == "torch"


def test_without_native_bf16_the_remembered_choice_stands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: False)
    avx2_onnx = {**BF16_CPU, "backend": "onnx", "precision": "fp32", "torch_precision": "fp32"}
    avx2_onnx.pop("torch_bf16_images_per_s")
    avx2_onnx["torch_fp32_images_per_s"] = 13.0
    assert {plan(avx2_onnx, n) for n in (1, 50, 500, 100_000)} == {"onnx"}
    # A machine where torch fp32 measured faster keeps torch even for one picture.
    avx2_torch = {**avx2_onnx, "backend": "torch", "torch_fp32_images_per_s": 20.0}
    assert {plan(avx2_torch, n) for n in (1, 50, 100_000)} == {"torch"}


def test_a_record_without_start_up_costs_keeps_its_backend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: True)
    old = {k: v for k, v in BF16_CPU.items() if k not in runtime.STARTUP_KEYS}
    assert plan(old, 5) == "torch"


@pytest.fixture
def exported(loaded_tiny_model) -> Any:
    from clipseek.models.export import export_model

    export_model(loaded_tiny_model)
    return loaded_tiny_model.spec


@pytest.mark.parametrize("bf16", [True, False])
def test_index_model_follows_the_plan_for_the_run(
    exported, monkeypatch: pytest.MonkeyPatch, bf16: bool
) -> None:
    """Through load_index_model with a remembered record: on a bf16 CPU 20 files load the
    ONNX export and 100,000 load torch in bf16; without bf16 both keep the record's choice."""
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: bf16)
    # torch is imported in this process already, so its model load alone must decide.
    runtime._store_choice(exported, {**BF16_CPU, "torch_load_s": 3.0})
    small = runtime.load_index_model(exported, "cpu", "auto", "auto", files=20)
    large = runtime.load_index_model(exported, "cpu", "auto", "auto", files=100_000)
    if bf16:
        assert (small.backend, large.backend) == ("onnx", "torch")
    else:
        assert small.backend == large.backend == "torch"
    assert large.precision == "bf16"
    # --backend is obeyed whatever the run's size.
    assert runtime.load_index_model(exported, "cpu", "auto", "onnx", files=100_000).backend == (
        "onnx"
    )
    assert runtime.load_index_model(exported, "cpu", "fp32", "torch", files=1).backend == "torch"


def test_start_up_costs_are_measured_with_the_rates(
    exported, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first auto run measures rates and start-up costs once; a record from before
    start-up costs is measured again on a bf16 CPU (and left alone elsewhere)."""
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: True)
    old = {k: v for k, v in BF16_CPU.items() if k not in runtime.STARTUP_KEYS}
    runtime._store_choice(exported, old)
    runtime.load_index_model(exported, "cpu", "fp32", "auto", files=10)
    record = runtime.cached_choice(exported)
    assert record is not None and record is not old
    assert all(record[k] >= 0 for k in runtime.STARTUP_KEYS)
    assert record["onnx_session_s"] > 0 and record["torch_load_s"] > 0
    assert record["torch_precision"] == "fp32" and record["torch_fp32_images_per_s"] > 0

    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: False)
    runtime._store_choice(exported, {**old, "precision": "fp32", "torch_precision": "fp32"})
    measured: list[str] = []
    monkeypatch.setattr(runtime, "images_per_second", lambda m, *a, **k: measured.append(m) or 1.0)
    runtime.load_index_model(exported, "cpu", "fp32", "auto", files=10)
    assert measured == []  # today's record, today's choice: nothing measured again


def test_the_indexer_tells_the_loader_how_many_images_it_will_embed(
    settings, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clipseek import engine as engine_module
    from clipseek.engine import Engine

    asked: list[int | None] = []
    real = runtime.load_index_model

    def spy(spec, device, precision, backend, files=None):
        asked.append(files)
        return real(spec, device, precision, backend, files)

    monkeypatch.setattr(engine_module, "load_index_model", spy)  # the name the engine calls
    summary = Engine(settings).index([photos])
    assert asked == [summary.embedded + len(summary.failed)] and summary.embedded > 0


@pytest.mark.parametrize("gpu", [False, True])
def test_triton_is_kept_out_only_where_no_gpu_could_use_it(
    monkeypatch: pytest.MonkeyPatch, gpu: bool
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "triton", None)  # restored, whatever it was, after
    del sys.modules["triton"]
    monkeypatch.setattr(hardware, "surely_no_gpu", lambda: not gpu)
    hardware.keep_triton_out()
    assert ("triton" in sys.modules) is (not gpu)
    if not gpu:
        with pytest.raises(ImportError):
            import triton  # noqa: F401
