"""Device and software fingerprints: what a latency number is only true for.

Each fingerprint is split into ``key`` fields (a change means a different latency: they key the
cache) and ``info`` fields (stored with each row, never keyed: UUID, live telemetry, host).
NVML is only read; clocks are never changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
from functools import lru_cache
from importlib import metadata
from typing import Any


def canonical(obj: Any) -> str:
    """Sorted, compact JSON: the same bytes for the same content on every machine."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def digest(obj: Any) -> str:
    return hashlib.sha256(canonical(obj).encode("ascii")).hexdigest()


def library_version(dist: str) -> str | None:
    """Exact installed version of a distribution (e.g. 'onnxruntime'), None when absent."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def host() -> str:
    return socket.gethostname()


# ---------------------------------------------------------------------- CPU
def _cpuinfo() -> list[dict[str, str]]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return []
    blocks = []
    for block in text.strip().split("\n\n"):
        entry = {}
        for line in block.splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                entry[k.strip()] = v.strip()
        blocks.append(entry)
    return blocks


@lru_cache(maxsize=1)
def cpu_model() -> str:
    for entry in _cpuinfo():
        if entry.get("model name"):
            return entry["model name"]
    return platform.processor() or platform.machine() or "unknown CPU"


def usable_cpus() -> int:
    """Logical CPUs this process may run on (affinity and cgroup pinning respected where visible)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@lru_cache(maxsize=1)
def physical_cores() -> int:
    """Physical cores (distinct (package, core) pairs), capped by the CPUs we may use."""
    pairs = {(e.get("physical id", "0"), e.get("core id", e.get("processor", "0")))
             for e in _cpuinfo() if "processor" in e}
    cores = len(pairs) if pairs else (os.cpu_count() or 1)
    return max(1, min(cores, usable_cpus()))


def cpu_fingerprint(threads: int) -> dict[str, Any]:
    """Key: CPU model, physical cores, threads used, ISA. Info: host, logical CPUs."""
    return {
        "device": f"{cpu_model()} ({threads} threads)",
        "key": {"kind": "cpu", "cpu_model": cpu_model(), "physical_cores": physical_cores(),
                "threads": threads, "machine": platform.machine()},
        "info": {"host": host(), "logical_cpus": os.cpu_count(), "usable_cpus": usable_cpus(),
                 "platform": platform.platform()},
    }


# ---------------------------------------------------------------------- GPU
def _nvml_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def gpu_fingerprint(device_index: int = 0) -> dict[str, Any]:
    """Fingerprint of CUDA device ``device_index`` as torch numbers it (CUDA_VISIBLE_DEVICES applies).

    torch gives SM count, compute capability and the CUDA runtime; NVML (nvidia-ml-py), matched by
    UUID, gives driver, MIG mode, application clocks and power limit (the clock regime, keyed) and
    live clocks, temperature and clock-event reasons (stored only). Without NVML the key still holds
    what torch knows and says NVML was unavailable.
    """
    import torch

    props = torch.cuda.get_device_properties(device_index)
    uuid = str(getattr(props, "uuid", "") or "")
    key: dict[str, Any] = {
        "kind": "gpu", "gpu_name": props.name, "compute_capability": f"{props.major}.{props.minor}",
        "sm_count": props.multi_processor_count, "memory_mib": props.total_memory // 2**20,
        "cuda_runtime": torch.version.cuda,
    }
    info: dict[str, Any] = {"host": host(), "torch_device_index": device_index, "uuid": uuid}
    key.update(_nvml_fields(uuid, info))
    return {"device": props.name, "key": key, "info": info}


def _nvml_fields(uuid: str, info: dict[str, Any]) -> dict[str, Any]:
    """Keyed NVML fields; telemetry goes into ``info``. Reads only, never sets clocks."""
    try:
        import pynvml
    except ImportError:
        return {"nvml": "unavailable (nvidia-ml-py not installed)"}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return {"nvml": f"unavailable ({exc})"}
    try:
        handle = pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}")
        keyed: dict[str, Any] = {"driver": _nvml_text(pynvml.nvmlSystemGetDriverVersion())}

        def read(fn: Any, *args: Any) -> Any:
            try:
                return fn(handle, *args)
            except (pynvml.NVMLError, AttributeError):
                return None

        mig = read(pynvml.nvmlDeviceGetMigMode)
        keyed["mig_mode"] = None if mig is None else int(mig[0])
        keyed["app_clock_sm_mhz"] = read(pynvml.nvmlDeviceGetApplicationsClock, pynvml.NVML_CLOCK_SM)
        keyed["app_clock_mem_mhz"] = read(pynvml.nvmlDeviceGetApplicationsClock, pynvml.NVML_CLOCK_MEM)
        limit = read(pynvml.nvmlDeviceGetPowerManagementLimit)
        keyed["power_limit_w"] = None if limit is None else round(limit / 1000)
        info["nvml_uuid"] = _nvml_text(read(pynvml.nvmlDeviceGetUUID))
        info["sm_clock_mhz"] = read(pynvml.nvmlDeviceGetClockInfo, pynvml.NVML_CLOCK_SM)
        info["max_sm_clock_mhz"] = read(pynvml.nvmlDeviceGetMaxClockInfo, pynvml.NVML_CLOCK_SM)
        info["temperature_c"] = read(pynvml.nvmlDeviceGetTemperature, pynvml.NVML_TEMPERATURE_GPU)
        reasons_fn = getattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            pynvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
        info["clock_event_reasons"] = read(reasons_fn) if reasons_fn else None
        return keyed
    except pynvml.NVMLError as exc:
        return {"nvml": f"unavailable ({exc})"}
    finally:
        pynvml.nvmlShutdown()
