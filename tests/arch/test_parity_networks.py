"""Per-network parity: every case of ``$OLDPHOTO_PARITY_DIR/networks`` is discovered and run.

For each case: synthesise the manifest's weights with the kit's own ``synth.py``, recognise the
network from the keys (never from names), load strictly, run the call that the case records on
its stored inputs and compare each stored output within the case's own tolerance.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import oldphoto_core.runtime.convolution as conv_module
from oldphoto_core import model_from_state_dict
from oldphoto_core.runtime.numerics import use_precision


def run_case(model_desc, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Run a network the way the reference's recorded call does, keyed by input names."""
    net, arch = model_desc.model, model_desc.arch
    if arch.kind == "vae":
        if "image" in inputs:
            return {"latent": net(inputs["image"], flow="enc")}
        return {"image": net(inputs["latent"], flow="dec")}
    if arch.kind == "mapping":
        if "mask" in inputs:
            return {"latent": net.inference_forward(inputs["latent"], inputs["mask"])
                    if hasattr(net, "inference_forward") else net(inputs["latent"],
                                                                  inputs["mask"])}
        return {"latent": net(inputs["latent"])}
    if arch.kind == "scratch_detector":
        return {"logits": net(inputs["gray"])}
    if arch.kind == "face_enhancer":
        pre = net.forward_pre_tanh(inputs["face"])
        return {"pre_tanh": pre, "image": torch.tanh(pre)}
    raise AssertionError(f"no call convention for {arch.id}")


def _winograd_layers(model: torch.nn.Module) -> int:
    """3x3 kernels wide enough for Winograd (plain or spectrally normalised convolutions)."""
    weights = [getattr(m, "weight_orig", getattr(m, "weight", None)) for m in model.modules()]
    return sum(isinstance(w, torch.Tensor) and w.dim() == 4 and tuple(w.shape[2:]) == (3, 3)
               and conv_module.winograd_pays_off(w.shape[1], w.shape[0], 1 << 30)
               for w in weights)


_LAST_LOADED: dict[Path, tuple] = {}


def _load_case(network_case: Path, parity: Path, synth) -> tuple:
    """(case, descriptor, tensors) of a case; the last one is kept, since both algorithms of
    a case run one after the other (synthesising and loading a 92 M-parameter face generator
    costs seconds). Tests do not change the weights."""
    if network_case not in _LAST_LOADED:
        _LAST_LOADED.clear()
        case = json.loads(network_case.read_text())
        sd = synth(case["manifest_file"], case["seed"])
        desc = model_from_state_dict(sd, source=case["manifest_file"])
        _LAST_LOADED[network_case] = (case, desc, load_file(parity / case["file"]))
    return _LAST_LOADED[network_case]


@pytest.mark.parametrize("algorithm", ["direct", "winograd"])
def test_network_parity(network_case: Path, parity: Path, synth, algorithm: str,
                        monkeypatch) -> None:
    """``direct``: PyTorch's own convolutions. ``winograd``: the default CPU path, forced onto
    every wide 3x3 layer even where the kit's small maps would keep it direct."""
    case, desc, data = _load_case(network_case, parity, synth)
    inputs = {k.split(".", 1)[1]: v for k, v in data.items() if k.startswith("input.")}
    calls = []
    if algorithm == "winograd":
        monkeypatch.setattr(conv_module, "WINOGRAD_MIN_PIXELS", 0)
        real = conv_module.winograd_conv3x3
        monkeypatch.setattr(conv_module, "winograd_conv3x3",
                            lambda *a, **k: calls.append(1) or real(*a, **k))
    with torch.no_grad(), use_precision("direct" if algorithm == "direct" else "exact"):
        outputs = run_case(desc, inputs)
    assert bool(calls) == (algorithm == "winograd" and _winograd_layers(desc.model) > 0)
    assert set(case["outputs"]) <= set(outputs), f"{case['case']}: outputs not produced"
    for name, spec in case["outputs"].items():
        ref = data[f"output.{name}"]
        ours = outputs[name]
        assert ours.shape == ref.shape, f"{name}: shape {tuple(ours.shape)} != {tuple(ref.shape)}"
        assert torch.isfinite(ours).all()
        err = (ours - ref).abs().max().item()
        # the case's own thresholds (TOLERANCES.md: networks/<case> per output), never looser
        if "tolerance_max_rel_to_peak" in spec:
            rel = err / ref.abs().max().item()
            assert rel <= spec["tolerance_max_rel_to_peak"] or err <= spec["tolerance_max_abs"], \
                f"{case['case']}.{name}: rel {rel:.3g}, abs {err:.3g}"
        else:
            assert err <= spec["tolerance_max_abs"], \
                f"{case['case']}.{name}: max |ours-ref| = {err:.3g} > {spec['tolerance_max_abs']}"


def test_parity_cases_discovered(parity: Path) -> None:
    _LAST_LOADED.clear()  # release the last model
    assert sorted((parity / "networks").glob("*.json")), "the parity kit holds no network case"
