"""Issue 11's AVX2 question, asked on this machine: the demo models' ONNX Runtime candidates, built
and gated here, run on a CPU that reports AVX2 and no AVX512 or VNNI (``qemu-x86_64 -cpu
EPYC-Rome``, Debian's qemu-user, installed by scripts/install-test-tools.sh).

torch and ONNX Runtime pick their kernels from CPUID, so the emulated CPU runs the AVX2 ones.
Emulation says nothing of speed, but predictions are exact: a candidate built for ``avx2``
predicts there as it did when it was gated, and one built for ``avx512_vnni`` does not (its u8 x
s8 products saturate without VNNI), which shows the emulated kernels really are other kernels.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(platform.machine() != "x86_64", reason="emulates an x86 CPU on an x86_64 host only"),
]

CPU = "EPYC-Rome"  # AMD Zen 2: AVX2, no AVX512, no VNNI


def _qemu() -> str:
    qemu = shutil.which("qemu-x86_64")
    assert qemu, "qemu-x86_64 missing: run scripts/install-test-tools.sh (Debian's qemu-user)"
    return qemu


def test_detection_follows_the_cpu_the_kernels_see() -> None:
    """Under emulation /proc/cpuinfo still lists this host's flags; CPUID says AVX2, and so does
    quantgate: ``auto`` resolves to avx2 (reduce_range on) and a VNNI verdict gets a warning."""
    code = (
        "import json; from quantgate import hardware as h; "
        "print(json.dumps([h.host_info(), h.resolve_target('auto'), h.ort_reduce_range('auto'), "
        "h.host_mismatch('avx512_vnni'), h.host_mismatch('avx2')]))"
    )
    proc = subprocess.run(
        [_qemu(), "-cpu", CPU, sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    host, auto, reduce_range, warn_vnni, warn_avx2 = json.loads(proc.stdout.strip().splitlines()[-1])
    assert host["isa"] == "avx2" and host["detected_by"] == "cpuid" and host["vnni"] is False
    assert host["torch_cpu_capability"] == "AVX2"
    assert auto == "avx2" and reduce_range is True
    assert "built and gated for avx512_vnni, but this host is avx2" in warn_vnni
    assert warn_avx2 is None


def test_an_avx2_candidate_predicts_on_avx2_as_it_did_when_gated(tmp_path: Path) -> None:
    from quantgate.hardware import host_info

    _qemu()
    work = tmp_path / "isa"
    out = tmp_path / "isa.md"
    script = ROOT / "scripts" / "isa_emulated.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--rows", "16", "--work", str(work), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    meta = json.loads((work / "meta.json").read_text())
    seen = set()
    for key, c in meta["candidates"].items():
        here, there = np.load(work / f"logits_here_{key}.npy"), np.load(work / f"logits_avx2_{key}.npy")
        assert here.shape == there.shape == (16, 2)
        change = float(np.abs(here - there).max())
        seen.add((c["model"], c["recipe"]))
        if "avx512_vnni" in c["recipe"]:
            assert c["ort_config"]["reduce_range"] is False
            if host_info()["vnni"]:  # gated with VNNI kernels: the AVX2 kernels give other logits
                assert change > 1e-3, f"{key}: the emulated CPU ran the same kernels ({change})"
        else:  # built for avx2 (7-bit weights: no saturation) or float: the verdict's predictions hold
            if "avx2" in c["recipe"]:
                assert c["ort_config"]["reduce_range"] is True
            assert np.array_equal(here.argmax(1), there.argmax(1)), key
            assert change < 1e-4, f"{key}: logits moved by {change} on the emulated AVX2 CPU"
    assert ("rt-sentiment", "ort-dynamic-int8 (target avx2)") in seen and ("adult-income", "ort-fp32") in seen
    table = out.read_text()
    assert f"qemu-x86_64 -cpu {CPU}" in table and "| rt-sentiment | ort-dynamic-int8 (target avx2) | 16 |" in table
