"""Do int8 verdicts hold on another CPU? Predictions of the demo models' ONNX Runtime candidates,
built here for each target ISA, compared with their predictions on an emulated CPU.

ONNX Runtime picks its int8 kernels from what CPUID reports, so a candidate gated on an
AVX512-VNNI host can predict differently on an AVX2 host without VNNI (u8 x s8 products can
saturate there). ``qemu-x86_64 -cpu EPYC-Rome`` (Debian's qemu-user) runs the same Python and
the same ONNX Runtime wheel on a CPU that reports AVX2 and no AVX512: the kernels that run are
the AVX2 ones. Emulation is slow (about 330 times slower than this host on MiniLM at batch 32)
and says nothing about speed; it does say, exactly, which predictions change.

    .venv/bin/python scripts/isa_emulated.py --rows 256 --out /tmp/isa.md

Needs ``qemu-x86_64`` (``apt-get install qemu-user``). The emulated runs go in parallel, one per
core, one ORT thread each; the report names this host and the emulated CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

EMULATED_CPU = "EPYC-Rome"  # AMD Zen 2: AVX2 and FMA, no AVX512, no VNNI


def _run(work: Path, tag: str, names: list[str]) -> None:
    """ONNX Runtime only (no torch): the logits of each candidate on every saved batch."""
    import onnxruntime as ort

    meta = json.loads((work / "meta.json").read_text())
    for name in names:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(work / f"{name}.onnx"), so, providers=["CPUExecutionProvider"])
        batches = meta["batches"][meta["candidates"][name]["model"]]
        out = []
        for i, files in enumerate(batches):
            t = time.perf_counter()
            feeds = dict(zip(meta["candidates"][name]["input_names"], [np.load(work / f) for f in files], strict=True))
            out.append(sess.run(None, feeds)[0])
            print(f"{tag} {name}: batch {i + 1}/{len(batches)} in {time.perf_counter() - t:.1f} s", flush=True)
        np.save(work / f"logits_{tag}_{name}.npy", np.concatenate(out))


def _build(work: Path, rows: int) -> dict:
    from quantgate.hardware import host_info
    from quantgate.quantize.bench import _models
    from quantgate.quantize.onnx_backend import OrtDynamicInt8Recipe, OrtFp32Recipe
    from quantgate.quantize.recipes import apply_recipe

    models = _models(quick=True)
    meta: dict = {"host": host_info(), "batches": {}, "labels": {}, "candidates": {}}
    for model_name, m in models.items():
        ev = m["eval"].head(rows)
        y = ev[m["label"]].to_numpy()
        meta["labels"][model_name] = [int(v) for v in y]
        files = []
        for i, tensors in enumerate(m["model"].batches(ev, 32)):
            names = []
            for j, t in enumerate(tensors):
                f = f"{model_name}_b{i}_{j}.npy"
                np.save(work / f, t.numpy())
                names.append(f)
            files.append(names)
        meta["batches"][model_name] = files
        recipes = {
            "ort-dynamic-int8 (target avx2)": OrtDynamicInt8Recipe(target="avx2"),
            "ort-dynamic-int8 (target avx512_vnni)": OrtDynamicInt8Recipe(target="avx512_vnni"),
        }
        if model_name == "adult-income":  # the lossless recipe, as the demo gated it on a Zen 5 host
            recipes = {"ort-fp32": OrtFp32Recipe(), **recipes}
        for label, recipe in recipes.items():
            res = apply_recipe(m["model"].module, recipe, m["calibration"])
            key = f"{model_name}_{len(meta['candidates'])}"
            (work / f"{key}.onnx").write_bytes(res.module.onnx_bytes)
            meta["candidates"][key] = {
                "model": model_name,
                "recipe": label,
                "input_names": res.module.input_names,
                "ort_config": res.hardware.get("ort_config", {}),
            }
    (work / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
    return meta


def _report(work: Path, meta: dict, seconds: float, command: str) -> str:
    host = meta["host"]
    lines = [
        f"Host: {host['cpu_model']}, {host['isa']} (by {host.get('detected_by', '?')}), {host['cpu_count']} CPUs. "
        f"Emulated: `qemu-x86_64 -cpu {EMULATED_CPU}` (AVX2, no AVX512, no VNNI). {seconds / 60:.0f} min. "
        f"Command: `{command}`",
        "",
        "| model | candidate | rows | accuracy here | accuracy on emulated AVX2 | predictions changed "
        "| rows whose logits moved | median / max logit move |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, c in meta["candidates"].items():
        y = np.asarray(meta["labels"][c["model"]])
        here, there = np.load(work / f"logits_here_{key}.npy"), np.load(work / f"logits_avx2_{key}.npy")
        ph, pt = here.argmax(1), there.argmax(1)
        move = np.abs(here - there).max(axis=1)
        lines.append(
            f"| {c['model']} | {c['recipe']} | {len(y)} | {(ph == y).mean():.4f} | {(pt == y).mean():.4f} | "
            f"{int((ph != pt).sum())} ({(ph != pt).mean():.1%}) | {int((move > 1e-4).sum())} | "
            f"{float(np.median(move)):.3g} / {float(move.max()):.3g} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=256, help="evaluation rows per model (default 256)")
    ap.add_argument("--out", type=Path, help="write the Markdown table here as well")
    ap.add_argument("--work", type=Path, default=Path("/tmp/quantgate-isa"), help="scratch directory")
    ap.add_argument("--run", nargs="+", help=argparse.SUPPRESS)  # internal: TAG NAME... (the emulated side)
    args = ap.parse_args()
    if args.run:
        _run(args.work, args.run[0], args.run[1:])
        return 0
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        print("qemu-x86_64 not found: install Debian's qemu-user (apt-get install qemu-user)", file=sys.stderr)
        return 2
    start = time.perf_counter()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    meta = _build(args.work, args.rows)
    keys = list(meta["candidates"])
    _run(args.work, "here", keys)
    me = [sys.executable, str(Path(__file__).resolve()), "--work", str(args.work), "--run", "avx2"]
    groups = [keys[0::2], keys[1::2]]  # two emulators, one per core
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    logs = [args.work / f"emulated-{i}.log" for i in range(len(groups))]
    procs = [
        subprocess.Popen([qemu, "-cpu", EMULATED_CPU, *me, *g], env=env, stderr=log.open("w"))
        for g, log in zip(groups, logs, strict=True)
    ]
    codes = [p.wait() for p in procs]
    if any(codes):
        print(f"an emulated run failed (exit codes {codes}): see {', '.join(map(str, logs))}", file=sys.stderr)
        return 1
    command = " ".join([".venv/bin/python", "scripts/isa_emulated.py", *sys.argv[1:]])
    text = _report(args.work, meta, time.perf_counter() - start, command)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
