"""Winograd F(4x4, 3x3): the same convolution as the direct one, to float32 rounding."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F

from oldphoto_core.arch.conv import WINOGRAD_MIN_PIXELS, Conv2d, conv2d, winograd_pays_off
from oldphoto_core.numerics import use_precision
from oldphoto_core.winograd import _AT, _BT, _G, winograd_conv3x3


def test_transforms_are_an_exact_correlation_algorithm() -> None:
    """sum_j AT[i,j] G[j,k] BT[j,l] == [l == i + k], in exact rational arithmetic."""
    frac = [[[Fraction(v).limit_denominator(100) for v in row] for row in m]
            for m in (_AT, _G, _BT)]
    at, g, bt = frac
    for i in range(4):
        for k in range(3):
            for lo in range(6):
                total = sum(at[i][j] * g[j][k] * bt[j][lo] for j in range(6))
                assert total == (1 if lo == i + k else 0)


@pytest.mark.parametrize(("b", "cin", "cout", "h", "w", "pad"), [
    (1, 3, 5, 6, 6, 0),          # exactly one tile
    (2, 4, 7, 11, 13, 1),        # ragged last tile row and column, batch
    (1, 16, 8, 3, 3, 1),         # a 3x3 map padded to one output tile
    (3, 32, 64, 37, 21, 0),
])
def test_matches_direct_convolution(b, cin, cout, h, w, pad) -> None:
    g = torch.Generator().manual_seed(cin * h + w)
    x = torch.randn(b, cin, h, w, generator=g)
    weight = torch.randn(cout, cin, 3, 3, generator=g) / (3 * cin ** 0.5)
    bias = torch.randn(cout, generator=g)
    ref = F.conv2d(x.double(), weight.double(), bias.double(), padding=pad)
    ours = winograd_conv3x3(x, weight, bias, pad)
    direct = F.conv2d(x, weight, bias, padding=pad)
    assert ours.shape == ref.shape and ours.is_contiguous()
    peak = ref.abs().max().item()
    # within a few float32 roundings of the output's peak, as the direct convolution is
    assert (ours - ref).abs().max().item() <= max(4 * (direct - ref).abs().max().item(),
                                                  2e-6 * peak)


def test_wide_layer_accuracy_is_that_of_the_direct_algorithm() -> None:
    """512 channels over many tiles: the case the restoration spends its time in."""
    g = torch.Generator().manual_seed(0)
    x = torch.relu(torch.randn(1, 512, 30, 41, generator=g))
    weight = torch.randn(512, 512, 3, 3, generator=g) / (3 * 512 ** 0.5)
    ref = F.conv2d(x.double(), weight.double(), padding=1)
    peak = ref.abs().max().item()
    err_w = (winograd_conv3x3(x, weight, None, 1) - ref).abs().max().item() / peak
    err_d = (F.conv2d(x, weight, padding=1) - ref).abs().max().item() / peak
    assert err_w < 5e-6
    assert err_w < 2.5 * err_d


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="3x3"):
        winograd_conv3x3(torch.zeros(1, 2, 8, 8), torch.zeros(4, 2, 5, 5))
    with pytest.raises(ValueError, match="smaller"):
        winograd_conv3x3(torch.zeros(1, 2, 2, 2), torch.zeros(4, 2, 3, 3))


WIDE = 256  # channels of a layer that takes Winograd on a large enough map


def test_dispatch_rule_follows_the_measurements() -> None:
    assert winograd_pays_off(512, 512, 124 * 156)
    assert winograd_pays_off(256, 128, 124 * 156) and winograd_pays_off(128, 256, 124 * 156)
    assert winograd_pays_off(1024, 512, 32 * 40)
    assert not winograd_pays_off(128, 128, 128 * 160)
    assert not winograd_pays_off(64, 64, 256 * 320)
    assert not winograd_pays_off(1024, 1024, 16 * 20)


def _wide_conv() -> Conv2d:
    torch.manual_seed(0)
    return Conv2d(WIDE, WIDE, 3, padding=1).eval()


def test_module_dispatch_follows_precision(monkeypatch) -> None:
    """Inference with precision 'exact' takes Winograd; 'direct' and training do not."""
    import oldphoto_core.arch.conv as conv_mod
    calls = []
    real = conv_mod.winograd_conv3x3
    monkeypatch.setattr(conv_mod, "winograd_conv3x3",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    conv = _wide_conv()
    x = torch.randn(1, WIDE, 64, WINOGRAD_MIN_PIXELS // 64)
    with torch.no_grad():
        fast = conv(x)
        assert calls == [1]
        with use_precision("direct"):
            direct = conv(x)
        assert calls == [1]
    conv(x)  # gradients enabled: direct kernels
    assert calls == [1]
    assert torch.allclose(fast, direct, atol=1e-5)


def test_narrow_strided_or_grouped_convs_stay_direct(monkeypatch) -> None:
    import oldphoto_core.arch.conv as conv_mod
    monkeypatch.setattr(conv_mod, "winograd_conv3x3",
                        lambda *a, **k: pytest.fail("Winograd used where it does not apply"))
    c = WIDE
    assert 12 * 12 < WINOGRAD_MIN_PIXELS
    with torch.no_grad():
        conv2d(torch.randn(1, 64, 12, 12), torch.randn(64, 64, 3, 3), padding=1)
        conv2d(torch.randn(1, c, 12, 12), torch.randn(c, c, 3, 3), stride=2, padding=1)
        conv2d(torch.randn(1, c, 12, 12), torch.randn(c, c // 2, 3, 3), padding=1, groups=2)
        conv2d(torch.randn(1, c, 12, 12), torch.randn(c, c, 3, 3), dilation=2, padding=2)
        conv2d(torch.randn(1, c, 12, 12).double(), torch.randn(c, c, 3, 3).double())
        conv2d(torch.randn(1, c, 12, 12), torch.randn(c, c, 3, 3), padding=1)  # small map


def test_same_bits_alone_or_in_a_batch() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 64, 50, 47, generator=g)
    weight = torch.randn(64, 64, 3, 3, generator=g)
    batch = winograd_conv3x3(x, weight, None, 1)
    for i in range(3):
        assert torch.equal(batch[i:i + 1], winograd_conv3x3(x[i:i + 1], weight, None, 1))


def test_workspace_reuses_buffers_and_gives_the_same_bits() -> None:
    import oldphoto_core.winograd as wg
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 32, 40, 36, generator=g)
    w1, w2 = torch.randn(2, 32, 32, 3, 3, generator=g)
    plain = wg.winograd_conv3x3(wg.winograd_conv3x3(x, w1, None, 1), w2, None, 1)
    assert wg._POOL.get() is None
    with wg.workspace():
        first = wg.winograd_conv3x3(x, w1, None, 1)
        pool = wg._POOL.get()
        ptrs = {k: v.data_ptr() for k, v in pool.items()}
        pooled = wg.winograd_conv3x3(first, w2, None, 1)
        assert {k: v.data_ptr() for k, v in pool.items()} == ptrs  # same size: reused
        assert first.data_ptr() not in ptrs.values()                 # outputs are fresh
    assert wg._POOL.get() is None
    assert torch.equal(plain, pooled)


@pytest.mark.parametrize(("h", "w", "pad"), [(9, 14, 1), (6, 6, 2), (13, 7, 1)])
def test_reflect_padding_equals_reflection_pad_then_conv(h, w, pad) -> None:
    """The pix2pixHD pattern (ReflectionPad2d + unpadded conv), folded into the tile buffer."""
    g = torch.Generator().manual_seed(h * w)
    x = torch.randn(2, 8, h, w, generator=g)
    weight = torch.randn(5, 8, 3, 3, generator=g) / 8
    bias = torch.randn(5, generator=g)
    ref = F.conv2d(F.pad(x.double(), (pad,) * 4, mode="reflect"), weight.double(), bias.double())
    ours = winograd_conv3x3(x, weight, bias, pad, "reflect")
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max().item() <= 2e-6 * ref.abs().max().item()


def test_reflect_padding_needs_a_larger_input() -> None:
    with pytest.raises(ValueError, match="reflection padding"):
        winograd_conv3x3(torch.zeros(1, 2, 2, 8), torch.zeros(4, 2, 3, 3), None, 2, "reflect")
    with pytest.raises(ValueError, match="padding_mode"):
        winograd_conv3x3(torch.zeros(1, 2, 8, 8), torch.zeros(4, 2, 3, 3), None, 1, "circular")


@pytest.mark.parametrize("wide", [True, False])
def test_conv2d_reflect_mode_on_both_paths(wide, monkeypatch) -> None:
    """``conv2d(padding_mode="reflect")`` is ReflectionPad2d + conv, by Winograd or directly."""
    import oldphoto_core.arch.conv as conv_mod
    calls = []
    real = conv_mod.winograd_conv3x3
    monkeypatch.setattr(conv_mod, "winograd_conv3x3",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    c = WIDE if wide else 16
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, c, 64, WINOGRAD_MIN_PIXELS // 64, generator=g)
    weight = torch.randn(c, c, 3, 3, generator=g) / (3 * c ** 0.5)
    with torch.no_grad():
        ours = conv2d(x, weight, None, padding=1, padding_mode="reflect")
        ref = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), weight)
    assert calls == ([1] if wide else [])
    assert torch.allclose(ours, ref, atol=2e-5)
