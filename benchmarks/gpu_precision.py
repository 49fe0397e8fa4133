"""Which precisions keep parity on a GPU: every network case of the kit under fp32 (strict),
TF32 (PyTorch's default for cuDNN convolutions), bf16 and fp16; max |ours - ref| vs tolerance.

Usage: ``python benchmarks/gpu_precision.py [--device cuda]`` (needs the parity kit at
``$OLDPHOTO_PARITY_DIR``, default ``../shared/parity``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from oldphoto_core import model_from_state_dict

REPO = Path(__file__).resolve().parents[1]
PARITY = Path(os.environ.get("OLDPHOTO_PARITY_DIR", REPO.parent / "shared" / "parity"))


def _synth():
    spec = importlib.util.spec_from_file_location("synth", PARITY / "synth.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.synth_from_manifest_file


def _call(desc, inputs):
    net, kind = desc.model, desc.arch.kind
    if kind == "vae":
        return {"latent": net.encode(inputs["image"])} if "image" in inputs else \
            {"image": net.decode(inputs["latent"])}
    if kind == "mapping":
        return {"latent": net(inputs["latent"], inputs["mask"]) if "mask" in inputs
                else net(inputs["latent"])}
    if kind == "scratch_detector":
        return {"logits": net(inputs["gray"])}
    return {"image": net(inputs["face"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    synth = _synth()
    modes = {"fp32": (torch.float32, False), "tf32": (torch.float32, True),
             "bf16": (torch.bfloat16, True), "fp16": (torch.float16, True)}
    print(f"{'case':32} " + " ".join(f"{m:>18}" for m in modes))
    for case_file in sorted((PARITY / "networks").glob("*.json")):
        case = json.loads(case_file.read_text())
        sd = synth(PARITY / case["manifest_file"], case["seed"])
        data = load_file(PARITY / case["file"])
        inputs = {k.split(".", 1)[1]: v for k, v in data.items() if k.startswith("input.")}
        cells = []
        for dtype, tf32 in modes.values():
            torch.backends.cudnn.allow_tf32 = tf32
            torch.backends.cuda.matmul.allow_tf32 = tf32
            desc = model_from_state_dict(sd, device=args.device, dtype=dtype)
            ins = {k: v.to(args.device, dtype) for k, v in inputs.items()}
            with torch.inference_mode():
                _call(desc, ins)
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                out = _call(desc, ins)
                torch.cuda.synchronize()
                ms = (time.perf_counter() - t0) * 1e3
            worst = 0.0
            ok = True
            for name, o in out.items():
                ref = data[f"output.{name}"]
                err = (o.float().cpu() - ref).abs().max().item()
                ok &= err <= case["outputs"][name]["tolerance_max_abs"]
                worst = max(worst, err)
            cells.append(f"{worst:9.2e} {'ok' if ok else 'NO':>2} {ms:5.0f}ms")
            del desc
        print(f"{case['case']:32} " + " ".join(f"{c:>18}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
