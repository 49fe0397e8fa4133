"""Winograd F(4x4, 3x3): the same convolution as the direct one, to float32 rounding.

Every accuracy check compares with the float64 convolution of the same float32 operands and
allows the worst-case rounding bound of each algorithm (``numeric_bounds``): element-wise,
from the operands' magnitudes, the transforms and the accumulation lengths, so it holds on
any CPU (AVX2 or AVX-512 summation orders alike) and still rejects a broken transform.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from numeric_bounds import check_within, conv2d_bound, winograd_bound, winograd_growth

import oldphoto_core.runtime.winograd as wg
from oldphoto_core.arch.conv import Conv2d
from oldphoto_core.runtime.convolution import WINOGRAD_MIN_PIXELS, conv2d, winograd_pays_off
from oldphoto_core.runtime.numerics import use_precision
from oldphoto_core.runtime.winograd import _AT, _BT, _G, winograd_conv3x3

# Lavin & Gray's F(4, 3) (points 0, +-1, +-2): the baseline our points are chosen against.
LAVIN_GRAY = (
    ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1)),
    ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6), (1 / 24, 1 / 12, 1 / 6),
     (1 / 24, -1 / 12, 1 / 6), (0, 0, 1)),
    ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0), (0, -2, -1, 2, 1, 0),
     (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1)),
)


def _is_exact_correlation(at, g, bt) -> bool:
    """sum_j AT[i,j] G[j,k] BT[j,l] == [l == i + k], in exact rational arithmetic."""
    at, g, bt = ([[Fraction(v).limit_denominator(100) for v in row] for row in m]
                 for m in (at, g, bt))
    return all(sum(at[i][j] * g[j][k] * bt[j][lo] for j in range(6)) == (1 if lo == i + k else 0)
               for i in range(4) for k in range(3) for lo in range(6))


def test_transforms_are_an_exact_correlation_algorithm() -> None:
    assert _is_exact_correlation(_AT, _G, _BT)
    assert _is_exact_correlation(*LAVIN_GRAY)


def _reference_and_bound(x, weight, bias, pad, mode="zeros"):
    """The float64 convolution of the float32 operands, and what Winograd in float32 may be
    off from it: Winograd's bound plus the float64 reference's own (direct) bound."""
    xp = F.pad(x.double(), (pad,) * 4, mode="reflect") if mode == "reflect" else x.double()
    ref = F.conv2d(xp, weight.double(), None if bias is None else bias.double(),
                   padding=0 if mode == "reflect" else pad)
    bound = winograd_bound(x, weight, bias, pad, mode) \
        + conv2d_bound(x, weight, bias, pad, mode, dtype=torch.float64)
    return ref, bound


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
    ref, bound = _reference_and_bound(x, weight, bias, pad)
    ours = winograd_conv3x3(x, weight, bias, pad)
    assert ours.shape == ref.shape and ours.is_contiguous()
    check_within(ours, ref, bound, "winograd vs exact")


def test_wide_layer_accuracy_is_that_of_the_direct_algorithm() -> None:
    """512 channels over many tiles: the case the restoration spends its time in.

    What the algorithm guarantees, on any CPU: each algorithm stays within its worst-case
    bound. Winograd's bound is the direct one's times the transforms' error growth (a property
    of the interpolation points: 97 for ours, 0, +-1, 2, -1/2; 256 for Lavin & Gray's
    0, +-1, +-2), divided by the ratio of accumulation lengths (Cin + 84 roundings per output
    against 9 Cin + 1): on this layer 12x the direct bound, against 32x with Lavin & Gray's
    points. (Measured errors are ~10^3 times below both bounds, and how they compare depends
    on the CPU: at 512 channels, 30x41, Winograd / direct errors were 3.0e-6 / 2.3e-6 of the
    peak on a 2-core AVX2 machine, 4.2e-6 / 2.7e-7 on an AVX-512 Xeon, where oneDNN sums in
    another order; so no test compares one algorithm's measured error to the other's.)
    """
    g = torch.Generator().manual_seed(0)
    x = torch.relu(torch.randn(1, 512, 24, 28, generator=g))
    weight = torch.randn(512, 512, 3, 3, generator=g) / (3 * 512 ** 0.5)
    ref, bound = _reference_and_bound(x, weight, None, 1)
    check_within(winograd_conv3x3(x, weight, None, 1), ref, bound, "winograd, 512 channels")
    direct_bound = conv2d_bound(x, weight, None, 1) \
        + conv2d_bound(x, weight, None, 1, dtype=torch.float64)
    check_within(F.conv2d(x, weight, padding=1), ref, direct_bound, "direct, 512 channels")
    assert winograd_growth() == pytest.approx(97.35, abs=0.01)
    assert winograd_growth(LAVIN_GRAY) == pytest.approx(256.0)
    lavin_gray_bound = winograd_bound(x, weight, None, 1, transforms=LAVIN_GRAY)
    assert bound.max() < 0.5 * lavin_gray_bound.max()


@pytest.mark.parametrize("bug", ["G row 3 in 16ths", "G entry off by 1%", "AT rows swapped",
                                 "output shifted one pixel"])
def test_the_bound_rejects_a_broken_algorithm(bug, monkeypatch) -> None:
    """The bound is loose (worst case) yet tight enough to catch real bugs: a wrong transform
    coefficient, output pixels written to the wrong place in a tile, a tile offset by one
    pixel. Each lands at least 10x (most 100-1000x) beyond the bound on 16 channels."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 16, 20, 20, generator=g)
    weight = torch.randn(16, 16, 3, 3, generator=g) / 12
    bias = torch.randn(16, generator=g)
    ref, bound = _reference_and_bound(x, weight, bias, 1)
    check_within(winograd_conv3x3(x, weight, bias, 1), ref, bound, "correct algorithm")
    at, gm = list(_AT), list(_G)
    if bug == "G row 3 in 16ths":
        gm[3] = (1 / 16, 2 / 16, 4 / 16)
    elif bug == "G entry off by 1%":
        gm[1] = (-1 / 3, -1 / 3, -1 / 3 * 1.01)
    elif bug == "AT rows swapped":
        at[1], at[2] = at[2], at[1]
    monkeypatch.setattr(wg, "_AT", tuple(at))
    monkeypatch.setattr(wg, "_G", tuple(gm))
    wg._transforms.cache_clear()
    try:
        broken = winograd_conv3x3(x, weight, bias, 1)
    finally:
        monkeypatch.undo()
        wg._transforms.cache_clear()
    if bug == "output shifted one pixel":
        broken = torch.roll(broken, 1, dims=-1)
    with pytest.raises(AssertionError, match="exceeds the rounding bound") as err:
        check_within(broken, ref, bound, bug)
    factor = float(str(err.value).split("bound by ")[1].split("x")[0])
    assert factor > 10, f"{bug}: only {factor}x beyond the bound"


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
    import oldphoto_core.runtime.convolution as conv_mod
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
    # two float32 algorithms, each within its own worst-case bound of the exact convolution
    w, b = conv.weight.detach(), conv.bias.detach()
    check_within(fast, direct, winograd_bound(x, w, b, 1) + conv2d_bound(x, w, b, 1),
                 "winograd vs direct")


def test_narrow_strided_or_grouped_convs_stay_direct(monkeypatch) -> None:
    import oldphoto_core.runtime.convolution as conv_mod
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
    """Bit-exact by construction on any CPU: chunks never mix batch items, so each item goes
    through the same products of the same shapes alone or in a batch."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 64, 50, 47, generator=g)
    weight = torch.randn(64, 64, 3, 3, generator=g)
    batch = winograd_conv3x3(x, weight, None, 1)
    for i in range(3):
        assert torch.equal(batch[i:i + 1], winograd_conv3x3(x[i:i + 1], weight, None, 1))


def test_workspace_reuses_buffers_and_gives_the_same_bits() -> None:
    """Bit-exact by construction: pooled buffers change where, not what, is computed."""
    import oldphoto_core.runtime.winograd as wg
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
    ref, bound = _reference_and_bound(x, weight, bias, pad, "reflect")
    ours = winograd_conv3x3(x, weight, bias, pad, "reflect")
    assert ours.shape == ref.shape
    check_within(ours, ref, bound, "reflect-padded winograd vs exact")


def test_reflect_padding_needs_a_larger_input() -> None:
    with pytest.raises(ValueError, match="reflection padding"):
        winograd_conv3x3(torch.zeros(1, 2, 2, 8), torch.zeros(4, 2, 3, 3), None, 2, "reflect")
    with pytest.raises(ValueError, match="padding_mode"):
        winograd_conv3x3(torch.zeros(1, 2, 8, 8), torch.zeros(4, 2, 3, 3), None, 1, "circular")


@pytest.mark.parametrize("wide", [True, False])
def test_conv2d_reflect_mode_on_both_paths(wide, monkeypatch) -> None:
    """``conv2d(padding_mode="reflect")`` is ReflectionPad2d + conv, by Winograd or directly."""
    import oldphoto_core.runtime.convolution as conv_mod
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
    if wide:  # Winograd vs direct: each within its worst-case bound of the exact result
        check_within(ours, ref, winograd_bound(x, weight, None, 1, "reflect")
                     + conv2d_bound(x, weight, None, 1, "reflect"), "winograd vs direct")
    else:     # the direct path is F.pad + F.conv2d, the very operations of ref: same bits
        assert torch.equal(ours, ref)
