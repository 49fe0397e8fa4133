"""The VGG19 perceptual term, from weights the user supplies (nothing is downloaded).

``--vgg19 FILE`` takes torchvision's VGG19 state dict (``features.N.weight/bias`` and usually
``classifier.*``), as ``.pth`` (read with ``weights_only=True``) or ``.safetensors``. The file
is recognised by its keys and shapes, not its name: the convolutions of ``features`` up to
``relu5_1`` must be present with VGG19's shapes; anything else (the classifier, the last
block) is ignored. The term is pix2pixHD's: L1 between the relu1_1 ... relu5_1 activations of
output and target, weighted 1/32, 1/16, 1/8, 1/4, 1.

Unlike the reference, inputs are mapped from [-1, 1] to ImageNet's normalisation first (the
reference feeds [-1, 1] images to a network trained on normalised ones).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import nn

from oldphoto_core.errors import CheckpointError
from oldphoto_core.loading import canonicalize_state_dict, read_state_dict

from .errors import TrainingError

__all__ = ["VGG19_CONVS", "vgg19_features", "check_vgg19_state_dict", "load_vgg19",
           "PerceptualLoss"]

#: ``features`` index -> (out, in) channels of VGG19's convolutions up to relu5_1 (index 29).
VGG19_CONVS: dict[int, tuple[int, int]] = {
    0: (64, 3), 2: (64, 64), 5: (128, 64), 7: (128, 128), 10: (256, 128), 12: (256, 256),
    14: (256, 256), 16: (256, 256), 19: (512, 256), 21: (512, 512), 23: (512, 512),
    25: (512, 512), 28: (512, 512),
}
_POOLS = (4, 9, 18, 27)
#: Slice ends (exclusive) after relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.
_TAPS = (2, 7, 12, 21, 30)
_TAP_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def vgg19_features() -> nn.Sequential:
    """torchvision's ``vgg19().features[:30]`` layout (same indices, hence same keys)."""
    layers: list[nn.Module] = []
    for i in range(30):
        if i in VGG19_CONVS:
            out_ch, in_ch = VGG19_CONVS[i]
            layers.append(nn.Conv2d(in_ch, out_ch, 3, padding=1))
        elif i in _POOLS:
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers.append(nn.ReLU(inplace=False))
    return nn.Sequential(*layers)


def check_vgg19_state_dict(sd: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """The ``features`` tensors VGG19 needs, keys without the ``features.`` prefix.

    Raises:
        TrainingError: keys missing or of the wrong shape (the message lists the first ones).
    """
    problems, out = [], {}
    for i, (out_ch, in_ch) in VGG19_CONVS.items():
        for name, shape in (("weight", (out_ch, in_ch, 3, 3)), ("bias", (out_ch,))):
            key = f"features.{i}.{name}"
            if key not in sd:
                problems.append(f"missing {key}")
            elif tuple(sd[key].shape) != shape:
                problems.append(f"{key} has shape {list(sd[key].shape)}, VGG19 has {list(shape)}")
            else:
                out[f"{i}.{name}"] = sd[key].float()
    if problems:
        raise TrainingError(
            f"{source}: not torchvision VGG19 weights ({len(problems)} problems: "
            f"{'; '.join(problems[:4])}). Expected the state dict of torchvision.models.vgg19 "
            f"(keys features.0.weight ... features.34.bias, classifier.*).")
    return out


def load_vgg19(path: str | os.PathLike[str]) -> nn.Sequential:
    """VGG19's ``features[:30]`` with the file's weights, in eval mode, frozen.

    Raises:
        TrainingError: unreadable, unsafe (pickled code) or not VGG19 weights.
    """
    try:
        raw, _ = read_state_dict(path)
        sd = canonicalize_state_dict(raw, source=str(path))
    except CheckpointError as exc:
        raise TrainingError(f"--vgg19: {exc}") from exc
    net = vgg19_features()
    net.load_state_dict(check_vgg19_state_dict(sd, str(path)), strict=True)
    return net.eval().requires_grad_(False)


class PerceptualLoss(nn.Module):
    """``sum_k w_k * L1(phi_k(x), phi_k(y))`` over VGG19's relu1_1 ... relu5_1.

    Shape: ``x``, ``y`` ``[B, 3, H, W]`` in [-1, 1] -> scalar; ``y`` is a constant target.
    """

    def __init__(self, features: nn.Sequential) -> None:
        super().__init__()
        self.features = features
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1))

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = ((x + 1) / 2 - self.mean) / self.std
        out, start = [], 0
        for end in _TAPS:
            for layer in self.features[start:end]:
                h = layer(h)
            out.append(h)
            start = end
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            targets = self._taps(y)
        total = x.new_zeros(())
        for w, fx, fy in zip(_TAP_WEIGHTS, self._taps(x), targets, strict=True):
            total = total + w * (fx - fy).abs().mean()
        return total
