"""Which runtime a process uses, and keeping the fast path exported.

Readers (a query, the app, the server) use the ONNX export when it is ready and torch
on the CPU otherwise: a GPU is for indexing, and initialising CUDA to embed one sentence
costs seconds. Indexing on a GPU keeps torch; on a CPU, ``--backend auto`` measures the
ONNX image tower against torch once per machine and model (and what each costs to start:
imports, model load, session build) and keeps the figures. On a CPU with native bf16,
where torch computes twice as fast but takes seconds longer to start, each run then picks
the runtime that finishes *that run* sooner (:func:`plan_cpu_runtime`); elsewhere the
faster image tower is kept, as before.

A process that had to load torch exports afterwards (:func:`export_after_use`). A failed
export is remembered next to the exports with the weights it was tried on, so it is
reported once, not on every query, and retried only when the weights change.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipseek.errors import DeviceError
from clipseek.fileio import write_whole
from clipseek.models.catalogue import ModelSpec
from clipseek.models.hardware import cpu_has_native_bf16, physical_cores, resolve_device
from clipseek.models.torch_backend import load_model, release_idle_memory
from clipseek.models.weights import cached_weights

if TYPE_CHECKING:
    from clipseek.models.base import Embedder

BACKENDS = ("auto", "torch", "onnx")


def load_reader_model(
    spec: ModelSpec, device: str, precision: str, backend: str, *, quick_start: bool = False
) -> Embedder:
    """The model a query, the app or the server embeds with; ``quick_start`` builds its
    sessions for the quickest start rather than the fastest use."""
    if backend != "torch":
        # Lazy: an unchanged re-index imports neither the export nor the ONNX backend.
        from clipseek.models.onnx_backend import load_onnx_model

        fast = load_onnx_model(spec, prepack=not quick_start)
        if fast is not None:
            return fast

    # A configured GPU (and its fp16) or int8 are indexing choices; a query runs on the CPU.
    reader_device = "cpu" if device in ("auto", "cuda") else device
    reader_precision = (
        "auto" if precision in ("int8", "fp16") and reader_device == "cpu" else precision
    )
    return load_model(spec, device=reader_device, precision=reader_precision)


#: The indexer's torch model leaves its text tower out until something asks for text
#: (``load_model(text="lazy")``): indexing never does, and on ViT-B/32 it is 120 of the
#: model's 326 MB in bf16 (docs/PERFORMANCE.md, "Memory of a torch bf16 run").
INDEX_TEXT = "lazy"


def load_index_model(
    spec: ModelSpec, device: str, precision: str, backend: str, files: int | None = None
) -> Embedder:
    """The model an index run embeds with (see the module docstring); ``files`` is the
    number of images the run will embed, where known."""
    if precision == "int8" or backend == "onnx":
        if device not in ("auto", "cpu"):
            raise DeviceError(
                "The ONNX backend (and --precision int8) runs on the CPU; use --device cpu "
                "or --backend torch."
            )
        return _onnx_for_indexing(spec, "int8" if precision == "int8" else "fp32")

    resolved = resolve_device(device)
    if backend == "torch" or resolved != "cpu":
        model: Embedder = load_model(spec, device=resolved, precision=precision, text=INDEX_TEXT)
    else:
        model = _auto_cpu(spec, precision, files)
    if model.backend == "torch" and model.device == "cpu":
        release_idle_memory()  # the GPU libraries the CUDA build of torch mapped
    return model


def _onnx_for_indexing(spec: ModelSpec, precision: str) -> Embedder:
    # Lazy: an unchanged re-index imports neither the export nor the ONNX backend.
    from clipseek.models.export import export_model
    from clipseek.models.onnx_backend import OnnxModel, load_onnx_model

    model = load_onnx_model(spec, precision)
    if model is not None:
        return model

    torch_model = load_model(spec, device="cpu", precision="fp32")
    export = export_model(torch_model)
    del torch_model
    return OnnxModel(spec, export, precision)


# --------------------------------------------------------------------------- auto on a CPU


def _choices_file() -> Path:
    # Lazy: an unchanged re-index imports neither the export nor the ONNX backend.
    from clipseek.models.export import exports_root

    return exports_root() / "backend-choice.json"


def _machine_key(spec: ModelSpec) -> str:

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    bf16 = "bf16" if cpu_has_native_bf16() else "nobf16"
    return f"{spec.key}|{cpu}|{physical_cores()} cores|{bf16}"


def _remembered(spec: ModelSpec) -> dict[str, Any] | None:
    """Everything remembered for ``spec`` on this machine (a damaged file: nothing)."""
    try:
        data = json.loads(_choices_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    found = data.get(_machine_key(spec)) if isinstance(data, dict) else None
    return found if isinstance(found, dict) else None


def cached_choice(spec: ModelSpec) -> dict[str, Any] | None:
    """The remembered runtime measurement for ``spec`` on this machine, if one was made
    (a record holding only cold-query figures, or a damaged one, is not one)."""
    found = _remembered(spec)
    return found if found is not None and found.get("backend") in ("torch", "onnx") else None


def _update_record(spec: ModelSpec, change: Callable[[dict[str, Any]], None]) -> None:
    """Read the remembered figures, let ``change`` edit this model's record, write the
    file whole; best effort (not remembering only costs the measurement again)."""
    path = _choices_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    key = _machine_key(spec)
    record = data.get(key)
    record = dict(record) if isinstance(record, dict) else {}
    change(record)
    data[key] = record
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
    write_whole(path, json.dumps(data, indent=2).encode("utf-8"))


def _store_choice(spec: ModelSpec, choice: dict[str, Any]) -> None:
    def replace(record: dict[str, Any]) -> None:
        # A new runtime measurement replaces the old one; cold-query figures stay.
        kept = record.get(COLD_QUERY_KEY)
        record.clear()
        record.update(choice)
        if kept is not None and COLD_QUERY_KEY not in choice:
            record[COLD_QUERY_KEY] = kept

    _update_record(spec, replace)


# --------------------------------------------------------------------------- cold queries

#: Where a model's cold-query figures are kept in its remembered record, and how many of
#: the latest runs are kept (their median is shown: one run on a busy machine, or with a
#: cold disk cache, does not decide the figure).
COLD_QUERY_KEY = "cold_query"
COLD_QUERY_RUNS = 5


@dataclass(frozen=True)
class ColdQuery:
    """What a fresh ``clipseek query "text"`` through the fast path cost here: seconds
    from the process's start to its answer, its CPU seconds, and its peak memory (MB);
    the median of the last ``runs`` queries."""

    seconds: float
    cpu_seconds: float
    peak_mb: float
    runs: int


def process_cost() -> tuple[float, float, float] | None:
    """This process's age (seconds since it started, interpreter start included), its CPU
    seconds and its peak resident memory in MB (VmHWM); None where the system does not
    say (only Linux's /proc gives a process's start and its own high-water mark)."""
    try:
        with open("/proc/self/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
        # Field 22, counted after the command name (which may hold spaces and parentheses).
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
        peak_kb = None
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    peak_kb = int(line.split()[1])
                    break
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    if peak_kb is None or not age > 0:
        return None
    times = os.times()
    return age, times.user + times.system, peak_kb / 1024


def remember_cold_query(
    spec: ModelSpec, seconds: float, cpu_seconds: float, peak_mb: float
) -> None:
    """Keep one cold query's figures for ``spec`` on this machine (the latest
    :data:`COLD_QUERY_RUNS`); best effort, never raises: a query's answer is already out."""

    def add(record: dict[str, Any]) -> None:
        runs = record.get(COLD_QUERY_KEY)
        runs = [r for r in runs if isinstance(r, dict)] if isinstance(runs, list) else []
        runs.append(
            {
                "seconds": round(seconds, 3),
                "cpu_seconds": round(cpu_seconds, 3),
                "peak_mb": round(peak_mb, 1),
                "measured": time.time(),
            }
        )
        record[COLD_QUERY_KEY] = runs[-COLD_QUERY_RUNS:]

    with contextlib.suppress(Exception):
        _update_record(spec, add)


def cold_query(spec: ModelSpec) -> ColdQuery | None:
    """The remembered cold-query figures of ``spec`` on this machine (medians), or None
    when no query through the fast path has been measured (or the record is damaged)."""
    import statistics

    record = _remembered(spec) or {}
    runs = record.get(COLD_QUERY_KEY)
    if not isinstance(runs, list):
        return None
    good = []
    for run in runs:
        try:
            figures = tuple(float(run[k]) for k in ("seconds", "cpu_seconds", "peak_mb"))
        except (KeyError, TypeError, ValueError):
            continue
        if all(math.isfinite(f) and f > 0 for f in figures):
            good.append(figures)
    if not good:
        return None
    seconds, cpu, peak = (statistics.median(column) for column in zip(*good, strict=True))
    return ColdQuery(seconds, cpu, peak, len(good))


def images_per_second(model: Embedder, batch: int = 16, rounds: int = 2) -> float:
    """Image tower throughput on synthetic prepared images (one warm-up batch first)."""
    import numpy as np

    h, w = model.image_size
    rng = np.random.default_rng(0)
    items = list(rng.integers(0, 256, size=(batch, h, w, 3), dtype=np.uint8))
    model.encode_prepared(items[:2])
    start = time.perf_counter()
    for _ in range(rounds):
        model.encode_prepared(items)
    return batch * rounds / (time.perf_counter() - start)


#: Start-up figures a remembered choice must hold for the run-level choice; a choice
#: remembered before they were measured is measured again once.
STARTUP_KEYS = ("torch_import_s", "torch_load_s", "onnx_import_s", "onnx_session_s")


def plan_cpu_runtime(
    choice: dict[str, Any],
    files: int | None,
    *,
    torch_imported: bool,
    onnx_imported: bool,
) -> str:
    """``"torch"`` or ``"onnx"``: the runtime a run of ``files`` images on this CPU finishes
    sooner with, from the remembered rates and start-up costs.

    Each runtime's time is its start-up (imports not yet done in this process, model load
    or session build) plus ``files`` at its image rate. Decoding costs both the same and
    cancels. Only on a CPU with native bf16: there torch's bf16 tower is about twice as fast
    as ONNX Runtime's fp32 but starts seconds later, so a few dozen pictures finish sooner
    on ONNX Runtime. Elsewhere, and when a figure is missing, the remembered faster tower
    is kept (today's behaviour).
    """
    from clipseek.models.hardware import cpu_has_native_bf16

    kept = str(choice.get("backend", "torch"))
    if files is None or not cpu_has_native_bf16():
        return kept
    try:
        onnx_rate = float(choice["onnx_fp32_images_per_s"])
        torch_rate = float(choice[f"torch_{choice['torch_precision']}_images_per_s"])
        startup = {k: float(choice[k]) for k in STARTUP_KEYS}
    except (KeyError, TypeError, ValueError):
        return kept
    if onnx_rate <= 0 or torch_rate <= 0:
        return kept
    torch_start = (0.0 if torch_imported else startup["torch_import_s"]) + startup["torch_load_s"]
    onnx_start = (0.0 if onnx_imported else startup["onnx_import_s"]) + startup["onnx_session_s"]
    torch_total = torch_start + files / torch_rate
    onnx_total = onnx_start + files / onnx_rate
    return "onnx" if onnx_total < torch_total else "torch"


def _import_seconds(*modules: str) -> float:
    """Seconds to import ``modules`` here (0 where already imported): a start-up cost."""
    import importlib

    start = time.perf_counter()
    for name in modules:
        if name not in sys.modules:
            importlib.import_module(name)
    return time.perf_counter() - start


def _auto_cpu(spec: ModelSpec, precision: str, files: int | None = None) -> Embedder:
    """torch or ONNX on this CPU (see :func:`plan_cpu_runtime`).

    The measurement needs an export; without one this run uses torch (and exports after
    it), and the next run measures. The result is kept per machine and model.
    """
    # Lazy: an unchanged re-index imports neither the export nor the ONNX backend.
    from clipseek.models.onnx_backend import load_onnx_model

    if precision not in ("auto", "fp32"):  # an explicit bf16 is a torch request
        return load_model(spec, device="cpu", precision=precision, text=INDEX_TEXT)
    choice = cached_choice(spec)
    if choice is not None and not _wants_startup(choice, precision):
        pick = plan_cpu_runtime(
            choice,
            files,
            torch_imported="open_clip" in sys.modules,
            onnx_imported="onnxruntime" in sys.modules,
        )
        if pick == "onnx":
            fast = load_onnx_model(spec)
            if fast is not None:
                return fast
        torch_precision = choice.get("torch_precision") or choice.get("precision", precision)
        return load_model(spec, device="cpu", precision=str(torch_precision), text=INDEX_TEXT)
    fast = load_onnx_model(spec)
    if fast is None:  # nothing to measure against: torch, and the export follows the run
        return load_model(spec, device="cpu", precision=precision, text=INDEX_TEXT)
    # Each start-up measured on its own: torch's imports and load, then ONNX Runtime's
    # import and image session (built while torch is loaded, as the indexer would).
    from clipseek.models.hardware import keep_triton_out

    keep_triton_out()  # as load_model does: the import is timed as it will be paid
    fresh_torch = "open_clip" not in sys.modules
    torch_import = _import_seconds("torch", "open_clip")
    started = time.perf_counter()
    torch_model = load_model(spec, device="cpu", precision=precision, text=INDEX_TEXT)
    torch_load = time.perf_counter() - started
    onnx_import = _import_seconds("onnxruntime")
    started = time.perf_counter()
    fast.warm("image")
    onnx_session = time.perf_counter() - started
    # Interleaved, best of two each: on a shared machine one burst of other work would
    # otherwise decide the runtime for every later run.
    onnx_rate = torch_rate = 0.0
    for _ in range(2):
        onnx_rate = max(onnx_rate, images_per_second(fast))
        torch_rate = max(torch_rate, images_per_second(torch_model))
    winner: Embedder = fast if onnx_rate > torch_rate else torch_model
    if not fresh_torch:
        # Imported earlier in this process (a reader's model): no figure for a fresh start;
        # a remembered one stays, else none is counted (torch is favoured, as before).
        torch_import = float((choice or {}).get("torch_import_s", 0.0))
    record: dict[str, Any] = {
        "backend": winner.backend,
        "precision": winner.precision,
        "torch_precision": torch_model.precision,
        "onnx_fp32_images_per_s": round(onnx_rate, 2),
        f"torch_{torch_model.precision}_images_per_s": round(torch_rate, 2),
        "torch_import_s": round(torch_import, 3),
        "torch_load_s": round(torch_load, 3),
        "onnx_import_s": round(onnx_import, 3),
        "onnx_session_s": round(onnx_session, 3),
        "measured": time.time(),
    }
    _store_choice(spec, record)
    # Both are loaded now: only the rates count for this run, and the faster one it is.
    return winner


def _wants_startup(choice: dict[str, Any], precision: str) -> bool:
    """Whether to measure again: a choice remembered before start-up costs were measured,
    on a CPU where they decide (native bf16), or one that timed torch in another precision
    than this run asks for (``--precision fp32`` once, auto now)."""
    from clipseek.models.hardware import cpu_has_native_bf16, resolve_precision

    if not cpu_has_native_bf16():
        return False
    measured = choice.get("torch_precision")
    if measured is not None and measured != resolve_precision(precision, "cpu"):
        return True
    return not all(k in choice for k in STARTUP_KEYS)


# --------------------------------------------------------------------------- exporting after use


@dataclass(frozen=True)
class ExportOutcome:
    """What :func:`export_after_use` did: ``exported`` (seconds), or ``error`` to report
    once (``detail`` is the traceback, for --debug), or neither (nothing to do)."""

    exported: float | None = None
    error: str | None = None
    detail: str | None = None
    folder: str | None = None


def _failure_file(spec: ModelSpec) -> Path:
    # Lazy: an unchanged re-index imports neither the export nor the ONNX backend.
    from clipseek.models.export import exports_root

    return exports_root() / f"{spec.collection_slug}.failed.json"


def _weights_stamp(spec: ModelSpec) -> dict[str, Any] | None:
    # Lazy: an unchanged re-index imports neither the export nor the ONNX backend.
    from clipseek.models.export import _weights_file

    try:
        path = cached_weights(spec)
        if path is None:
            return None
        st = _weights_file(path).stat()
    except Exception:
        return None
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _exports_disabled() -> bool:
    """``CLIPSEEK_NO_EXPORT=1`` turns the automatic export off (the tests set it)."""
    return os.environ.get("CLIPSEEK_NO_EXPORT", "").strip().lower() in {"1", "true", "yes", "on"}


def needs_export(model: Embedder) -> bool:
    """Whether ``model`` is a torch model whose fast path is missing and not known to fail."""
    if getattr(model, "backend", None) != "torch" or not hasattr(model, "_tokenizer"):
        return False
    if _exports_disabled():
        return False
    # Lazy: an unchanged re-index imports neither the export nor the ONNX backend.
    from clipseek.models.export import find_export

    if find_export(model.spec) is not None:
        return False
    try:
        failed = json.loads(_failure_file(model.spec).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True
    return failed.get("weights") != _weights_stamp(model.spec)


def export_after_use(model: Embedder) -> ExportOutcome:
    """Export ``model``'s fast path if it needs one; never raises."""
    import traceback

    # Lazy: an unchanged re-index imports neither the export nor the ONNX backend.
    from clipseek.models.export import ExportError, export_model

    try:
        if not needs_export(model):
            return ExportOutcome()
        start = time.perf_counter()
        export = export_model(model)  # type: ignore[arg-type]
        _failure_file(model.spec).unlink(missing_ok=True)
        return ExportOutcome(exported=time.perf_counter() - start, folder=str(export.folder))
    except Exception as exc:
        message = str(exc) if isinstance(exc, ExportError) else f"{type(exc).__name__}: {exc}"
        detail = traceback.format_exc()
        try:
            path = _failure_file(model.spec)
            path.parent.mkdir(parents=True, exist_ok=True)
            stamp = _weights_stamp(model.spec)
            path.write_text(json.dumps({"weights": stamp, "error": message}), encoding="utf-8")
        except OSError:
            pass
        return ExportOutcome(error=message, detail=detail)
