"""``--vgg19``: torchvision-format weights recognised by their keys, loaded safely."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from training.errors import TrainingError
from training.vgg import PerceptualLoss, load_vgg19, vgg19_features


def test_pth_and_safetensors_files_are_recognised(tmp_path, vgg19_sd):
    sd = vgg19_sd()
    torch.save(sd, tmp_path / "vgg19.pth")
    save_file({k: v.contiguous() for k, v in sd.items() if k.startswith("features")},
              str(tmp_path / "renamed.safetensors"))
    for name in ("vgg19.pth", "renamed.safetensors"):
        net = load_vgg19(tmp_path / name)
        assert not any(p.requires_grad for p in net.parameters())
        assert torch.equal(net[28].weight, sd["features.28.weight"])


def test_other_networks_are_refused_with_the_keys_named(tmp_path):
    vgg16 = {f"features.{i}.weight": torch.zeros(64, 3, 3, 3) for i in (0, 2, 5, 7, 10, 12, 14,
                                                                         17, 19, 21, 24, 26, 28)}
    torch.save(vgg16, tmp_path / "vgg16.pth")
    with pytest.raises(TrainingError, match="not torchvision VGG19 weights.*features"):
        load_vgg19(tmp_path / "vgg16.pth")


def test_pickled_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))
    with (tmp_path / "evil.pth").open("wb") as f:
        torch.save({"features.0.weight": Payload()}, f, pickle_protocol=2)
    with pytest.raises(TrainingError, match="--vgg19"):
        load_vgg19(tmp_path / "evil.pth")


def test_perceptual_loss_is_the_weighted_l1_of_relu_k_1_activations(vgg19_sd):
    features = vgg19_features()
    features.load_state_dict({k[len("features."):]: v for k, v in
                              vgg19_sd(1).items()
                              if k.startswith("features.") and int(k.split(".")[1]) < 30})
    loss = PerceptualLoss(features.eval())
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(1, 3, 32, 32, generator=g) * 2 - 1, torch.rand(1, 3, 32, 32, generator=g)
    assert loss(y, y).item() == 0.0
    # independent computation: torchvision's relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 are
    # the outputs of features[1], [6], [11], [20], [29]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def taps(img):
        h, out = ((img + 1) / 2 - mean) / std, []
        for i, layer in enumerate(features):
            h = layer(h)
            if i in (1, 6, 11, 20, 29):
                out.append(h)
        return out
    expected = sum(w * (a - b).abs().mean() for w, a, b in
                   zip((1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0), taps(x), taps(y), strict=True))
    assert loss(x, y).item() == pytest.approx(expected.item(), rel=1e-5)
    assert isinstance(features[29], nn.ReLU) and len(features) == 30
