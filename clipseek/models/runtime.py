"""Which runtime a process uses, and keeping the fast path exported.

Readers (a query, the app, the server) use the ONNX export when it is ready and torch
on the CPU otherwise: a GPU is for indexing, and initialising CUDA to embed one sentence
costs seconds. Indexing on a GPU keeps torch; on a CPU, ``--backend auto`` measures the
ONNX image tower against torch once per machine and model and keeps the faster.

A process that had to load torch exports afterwards (:func:`export_after_use`). A failed
export is remembered next to the exports with the weights it was tried on, so it is
reported once, not on every query, and retried only when the weights change.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipseek.errors import DeviceError
from clipseek.fileio import write_whole
from clipseek.models.catalogue import ModelSpec
from clipseek.models.hardware import cpu_has_native_bf16, physical_cores, resolve_device
from clipseek.models.torch_backend import load_model
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


def load_index_model(spec: ModelSpec, device: str, precision: str, backend: str) -> Embedder:
    """The model an index run embeds with (see the module docstring)."""
    if precision == "int8" or backend == "onnx":
        if device not in ("auto", "cpu"):
            raise DeviceError(
                "The ONNX backend (and --precision int8) runs on the CPU; use --device cpu "
                "or --backend torch."
            )
        return _onnx_for_indexing(spec, "int8" if precision == "int8" else "fp32")

    resolved = resolve_device(device)
    if backend == "torch" or resolved != "cpu":
        return load_model(spec, device=resolved, precision=precision)
    return _auto_cpu(spec, precision)


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


def cached_choice(spec: ModelSpec) -> dict[str, Any] | None:
    try:
        data = json.loads(_choices_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    found = data.get(_machine_key(spec)) if isinstance(data, dict) else None
    return found if isinstance(found, dict) else None


def _store_choice(spec: ModelSpec, choice: dict[str, Any]) -> None:
    path = _choices_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    data[_machine_key(spec)] = choice
    # Not remembering only costs the measurement again next time.
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
    write_whole(path, json.dumps(data, indent=2).encode("utf-8"))


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


def _auto_cpu(spec: ModelSpec, precision: str) -> Embedder:
    """torch or ONNX on this CPU, whichever computes the image tower faster here.

    The measurement needs an export; without one this run uses torch (and exports after
    it), and the next run measures. The result is kept per machine and model.
    """
    # Lazy: an unchanged re-index imports neither the export nor the ONNX backend.
    from clipseek.models.onnx_backend import load_onnx_model

    if precision not in ("auto", "fp32"):  # an explicit bf16 is a torch request
        return load_model(spec, device="cpu", precision=precision)
    choice = cached_choice(spec)
    if choice is not None and choice.get("backend") == "onnx":
        fast = load_onnx_model(spec)
        if fast is not None:
            return fast
    if choice is not None and choice.get("backend") == "torch":
        return load_model(spec, device="cpu", precision=str(choice.get("precision", precision)))
    fast = load_onnx_model(spec)
    torch_model = load_model(spec, device="cpu", precision=precision)
    if fast is None:
        return torch_model
    onnx_rate = images_per_second(fast)
    torch_rate = images_per_second(torch_model)
    winner: Embedder = fast if onnx_rate > torch_rate else torch_model
    _store_choice(
        spec,
        {
            "backend": winner.backend,
            "precision": winner.precision,
            "onnx_fp32_images_per_s": round(onnx_rate, 2),
            f"torch_{torch_model.precision}_images_per_s": round(torch_rate, 2),
            "measured": time.time(),
        },
    )
    return winner


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
