"""What the machine offers: devices, precisions and cores."""

from __future__ import annotations

import os

from clipseek.errors import DeviceError

#: Device nodes a GPU driver creates on Linux (NVIDIA, AMD ROCm, WSL's GPU bridge): where
#: none exists torch can find no GPU either, so there is no need to import it (seconds) to ask.
_GPU_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")


def surely_no_gpu() -> bool:
    """True where the machine certainly has no GPU torch could use (Linux, no driver)."""
    import sys

    return sys.platform.startswith("linux") and not any(os.path.exists(n) for n in _GPU_NODES)


def resolve_device(device: str) -> str:
    """Pick a torch device; asking for one that is absent is a user error, not a crash.

    ``cpu``, and ``auto`` on a machine without a GPU driver, are answered without importing
    torch, so a CPU index run on the ONNX runtime never loads it."""
    if device == "cpu" or (device == "auto" and surely_no_gpu()):
        return "cpu"
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            "CUDA was requested but torch sees no CUDA GPU on this machine; "
            "use --device cpu (or auto), or install a CUDA build of torch."
        )
    if device == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceError(
                "Apple MPS was requested but is not available here; use --device cpu."
            )
    return device


def resolve_precision(precision: str, device: str) -> str:
    """fp16 on GPUs, bf16 where the CPU computes it natively, fp32 otherwise.

    On a CPU without bf16 instructions torch emulates bf16 matmuls and runs several times
    slower than fp32, so auto only picks bf16 where :func:`cpu_has_native_bf16` says so
    (see docs/PERFORMANCE.md for the figures).
    """
    if precision != "auto":
        if precision == "fp16" and device == "cpu":
            raise DeviceError(
                "fp16 is only supported on a GPU; use --precision bf16 or fp32 on a CPU."
            )
        return precision
    if device.startswith("cuda") or device == "mps":
        return "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def cpu_has_native_bf16() -> bool:
    """bf16 matmuls are only faster than fp32 where the CPU has bf16 instructions
    (AVX512-BF16 or AMX on x86); read at run time, since wheels are built for any CPU."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def physical_cores() -> int:
    """CPUs this process may use (affinity and cgroup CPU sets respected)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def set_torch_threads(threads: int) -> None:
    """Give torch's intra-op pool ``threads`` threads; the rest of the cores decode images."""
    import torch

    threads = max(1, int(threads))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
