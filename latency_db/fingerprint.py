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
# Instruction-set flags ONNX Runtime (MLAS) and PyTorch (oneDNN, ATen CPU capability) choose kernels by:
# two CPUs that differ in one of these may run a different kernel for the same operator.
DISPATCH_FLAGS = (
    "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni",
    "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd", "avx512_vnni", "avx512_bf16", "avx512_fp16",
    "amx_tile", "amx_int8", "amx_bf16", "amx_fp16",
    "asimd", "asimddp", "asimdhp", "sve", "sve2", "bf16", "i8mm",  # aarch64 (Features line)
)
# Revision of the CPU key's fields: rows keyed before version 2 (model name, cores and threads only)
# stay in the database but cannot be shown to match any CPU, so they never answer a lookup.
CPU_KEY_VERSION = 2
_CACHE_DIR = "/sys/devices/system/cpu/cpu0/cache"


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def parse_cpuinfo(text: str) -> list[dict[str, str]]:
    """/proc/cpuinfo text -> one dict per logical CPU block."""
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
def _cpuinfo() -> tuple[dict[str, str], ...]:
    return tuple(parse_cpuinfo(_read_text("/proc/cpuinfo") or ""))


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


def cache_sizes_kib(cache_dir: str = _CACHE_DIR) -> dict[str, int]:
    """Per-core cache sizes from sysfs ({'l1d': 32, 'l2': 1024, 'l3': 32768}); empty where unreadable."""
    sizes: dict[str, int] = {}
    if not os.path.isdir(cache_dir):
        return sizes
    for name in sorted(os.listdir(cache_dir)):
        base = os.path.join(cache_dir, name)
        level, kind, size = (_read_text(os.path.join(base, f)) for f in ("level", "type", "size"))
        if not (level and kind and size) or kind.strip() == "Instruction":
            continue
        size = size.strip().upper()
        mult = {"K": 1, "M": 1024, "G": 1024 * 1024}.get(size[-1:])
        try:
            kib = int(size[:-1]) * mult if mult else int(size) // 1024
        except ValueError:
            continue
        sizes[f"l{level.strip()}" + ("d" if kind.strip() == "Data" else "")] = kib
    return sizes


def cpu_identity(blocks: list[dict[str, str]] | tuple[dict[str, str], ...],
                 caches: dict[str, int]) -> dict[str, Any]:
    """The microarchitecture fields of the CPU key, from parsed /proc/cpuinfo and the cache sizes."""
    first = next((b for b in blocks if "processor" in b), blocks[0] if blocks else {})
    present = set((first.get("flags") or first.get("Features") or "").split())

    def field(*names: str) -> str | None:
        return next((first[n] for n in names if first.get(n)), None)

    return {
        "vendor": field("vendor_id", "CPU implementer"),
        "cpu_family": field("cpu family", "CPU architecture"),
        "cpu_model_number": field("model", "CPU part"),
        "stepping": field("stepping", "CPU revision"),
        "isa": sorted(f for f in DISPATCH_FLAGS if f in present),
        "cache_kib": caches,
    }


def cpu_isa() -> list[str]:
    """This machine's dispatch ISA flags (DISPATCH_FLAGS it has), from /proc/cpuinfo read once."""
    return cpu_identity(_cpuinfo(), {})["isa"]


def cpu_fingerprint(threads: int, identity: dict[str, Any] | None = None) -> dict[str, Any]:
    """Key: CPU model name, vendor/family/model/stepping, dispatch ISA flags, caches, cores, threads.
    Info: host, logical CPUs. ``identity`` replaces what this machine's /proc/cpuinfo says (tests)."""
    ident = identity if identity is not None else cpu_identity(_cpuinfo(), cache_sizes_kib())
    wide = [f for f in ("avx512f", "amx_tile") if f in ident["isa"]]
    simd = "+".join(wide) or ("avx2" if "avx2" in ident["isa"] else "no avx2")
    return {
        "device": f"{cpu_model()} (family {ident['cpu_family']} model {ident['cpu_model_number']}, {simd}, "
                  f"{threads} threads)",
        "key": {"kind": "cpu", "cpu_key_version": CPU_KEY_VERSION, "cpu_model": cpu_model(), **ident,
                "physical_cores": physical_cores(), "threads": threads, "machine": platform.machine()},
        "info": {"host": host(), "logical_cpus": os.cpu_count(), "usable_cpus": usable_cpus(),
                 "platform": platform.platform()},
    }


def cpu_flags_of(device_key: dict[str, Any]) -> list[str] | None:
    """The ISA flags a stored CPU device key was shown to have; None for a pre-flags (legacy) key."""
    if device_key.get("kind") != "cpu" or device_key.get("cpu_key_version", 1) < CPU_KEY_VERSION:
        return None
    return list(device_key.get("isa", []))


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
