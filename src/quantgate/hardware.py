"""The hardware a candidate is built and judged for.

A quantized candidate's accuracy and speed depend on the CPU's integer instructions: on an
AVX2 host without VNNI, ONNX Runtime's u8/s8 kernels can saturate (the VNNI configuration lost
0.55 point on rt-sentiment there while ``reduce_range`` lost nothing). So each recipe is built
for a *target* ISA, and the target, the host it was measured on and the backend settings that
target chose are recorded with the candidate.

Targets: ``avx2``, ``avx512``, ``avx512_vnni``, ``arm64``; ``auto`` resolves to the host's.

Detection asks the CPU itself (CPUID, through the cpuinfo library torch ships), because that is
what torch's and ONNX Runtime's kernels dispatch on; ``/proc/cpuinfo`` is the fallback. The two
can disagree: under an emulator (``qemu-x86_64 -cpu EPYC-Rome``, how the AVX2 check in the
README runs) ``/proc/cpuinfo`` still lists the real host's AVX512 flags while the kernels see
AVX2. Nothing here is cached across processes; detection runs once per process.
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path
from typing import Any

TARGETS = ("auto", "avx2", "avx512", "avx512_vnni", "arm64")
ISAS = TARGETS[1:]


def _cpuinfo(path: Path = Path("/proc/cpuinfo")) -> tuple[set[str], str]:
    """(flags, model name) of the first CPU listed; empty when the file is unreadable."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return set(), ""
    flags: set[str] = set()
    model = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("flags", "features") and not flags:  # x86 "flags", arm "Features"
            flags = set(value.split())
        elif key in ("model name", "cpu model", "hardware") and not model:
            model = value.strip()
    return flags, model


def _cpuid() -> dict[str, bool] | None:
    """What the CPU reports through CPUID (torch's cpuinfo), or None where torch cannot say."""
    import torch

    try:
        return {
            "avx2": bool(torch.cpu._is_avx2_supported()),
            "avx512": bool(torch.cpu._is_avx512_supported()),
            "avx512_vnni": bool(torch.cpu._is_vnni_supported()),  # AVX512-VNNI (torch's note: not AVX-VNNI)
        }
    except (AttributeError, RuntimeError):  # another torch build: /proc/cpuinfo decides
        return None


def isa_from(machine: str, flags: set[str], torch_capability: str = "", cpuid: dict[str, bool] | None = None) -> str:
    """The best target ISA a CPU supports (pure: tested with made-up flag sets). ``cpuid``, when
    known, wins over ``flags``: it is what the kernels dispatch on."""
    m = machine.lower()
    if m in ("arm64", "aarch64") or m.startswith("armv8"):
        return "arm64"
    if cpuid is not None:
        if cpuid.get("avx512"):
            return "avx512_vnni" if cpuid.get("avx512_vnni") else "avx512"
        return "avx2"  # AVX2, or an older x86 CPU: the most conservative x86 configuration
    cap = torch_capability.upper()
    if "avx512f" in flags or cap.startswith("AVX512"):
        return "avx512_vnni" if "avx512_vnni" in flags else "avx512"
    if "avx2" in flags or cap == "AVX2":
        return "avx2"
    # An x86 CPU without AVX2 gets the most conservative x86 configuration.
    return "avx2"


@functools.cache
def host_info() -> dict[str, Any]:
    """The host's ISA, CPU model, thread counts and torch's quantized engine (JSON-ready)."""
    import torch

    flags, model = _cpuinfo()
    try:
        capability = str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # older torch or an unusual build: detection falls back to the flags
        capability = ""
    machine = platform.machine()
    cpuid = _cpuid() if machine.lower() in ("x86_64", "amd64", "i686", "x86") else None
    return {
        "isa": isa_from(machine, flags, capability, cpuid),
        "machine": machine,
        "cpu_model": model or platform.processor() or "unknown",
        "cpu_count": os.cpu_count() or 0,
        "torch_threads": torch.get_num_threads(),
        "torch_cpu_capability": capability,
        "torch_quantized_engine": torch.backends.quantized.engine,
        "vnni": bool(cpuid["avx512_vnni"]) if cpuid else "avx512_vnni" in flags or "avx_vnni" in flags,
        "detected_by": "cpuid" if cpuid else "/proc/cpuinfo",
    }


def resolve_target(target: str) -> str:
    """``auto`` -> the host's ISA; anything else must be a known target."""
    from quantgate.errors import ConfigError

    if target not in TARGETS:
        raise ConfigError(f"hardware target {target!r} is not one of {', '.join(TARGETS)}")
    return str(host_info()["isa"]) if target == "auto" else target


def torch_engine(target: str) -> str:
    """torch's quantized engine for a target: x86 (fbgemm + oneDNN) on Intel/AMD, qnnpack on Arm."""
    return "qnnpack" if resolve_target(target) == "arm64" else "x86"


def ort_reduce_range(target: str) -> bool:
    """7-bit weights where the int8 kernels can saturate (u8 x s8 without VNNI)."""
    return resolve_target(target) == "avx2"


def describe(target: str) -> dict[str, Any]:
    """The record for a candidate: requested and resolved target, and the host."""
    host = host_info()
    resolved = resolve_target(target)
    return {"target": resolved, "requested_target": target, "host": host, "matches_host": resolved == host["isa"]}


def host_mismatch(recorded_target: str) -> str | None:
    """A warning when this host's ISA differs from the target a candidate was judged for
    (what ``quantgate verify`` and serving should print), or None when they match."""
    host = host_info()
    if recorded_target in ("", "auto", "any") or recorded_target == host["isa"]:
        return None
    return (
        f"this candidate was built and gated for {recorded_target}, but this host is {host['isa']} "
        f"({host['cpu_model']}): its accuracy and speed may differ from the verdict "
        "(int8 and int4 kernels are chosen by the ISA)"
    )
