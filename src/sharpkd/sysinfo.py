"""The machine a result was measured on (training sidecars and benchmarks record it): py-cpuinfo for the CPU,
psutil for cores, memory, load and the CPU time a hypervisor took (steal)."""
from __future__ import annotations

import functools
import os
import platform

SIMD_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")  # what decides bf16 and conv speed


@functools.cache
def _cpu_info() -> dict:
    import cpuinfo

    try:
        return cpuinfo.get_cpu_info()
    except Exception:  # py-cpuinfo probes the CPU in a subprocess; a failure there is no reason to fail
        return {}


def cpu_name() -> str:
    """The CPU's model name, else what `platform` knows."""
    return _cpu_info().get("brand_raw") or platform.processor() or platform.machine()


def physical_cores() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def native_bf16() -> bool:
    """Whether the CPU computes bfloat16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated, and slow."""
    return bool({"avx512_bf16", "amx_bf16"} & set(hardware()["simd"]))


def hardware(threads: int | None = None) -> dict:
    """CPU, cores, SIMD extensions, memory, GPU, the current load and the library versions, as a JSON-able dict."""
    import psutil
    import torch

    flags = set(_cpu_info().get("flags", []))
    try:
        load = round(psutil.getloadavg()[0], 2)
    except OSError:
        load = None
    return {"cpu": cpu_name(), "physical_cores": physical_cores(), "logical_cpus": psutil.cpu_count(),
            "simd": [f for f in SIMD_FLAGS if f in flags], "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "threads": threads or torch.get_num_threads(), "load_average_1min": load, "torch": torch.__version__,
            "python": platform.python_version()}


def cpu_times():
    """psutil's system-wide CPU times now, to difference across a measurement (`steal_share`)."""
    import psutil

    return psutil.cpu_times()


def steal_share(before, after) -> float | None:
    """The share of CPU time that the hypervisor gave to other machines between two `cpu_times()` (None where the
    OS does not count it): timings taken while it was high were taken on a machine that was not all theirs."""
    total = sum(after) - sum(before)
    if not hasattr(after, "steal") or total <= 0:
        return None
    return round((after.steal - before.steal) / total, 3)


def describe(threads: int | None = None) -> str:
    """One line: 'AMD EPYC, 2 threads' (and the GPU, when there is one)."""
    hw = hardware(threads)
    return f"{hw['cpu']}, {hw['threads']} threads" + (f", GPU {hw['gpu']}" if hw["gpu"] else "")
