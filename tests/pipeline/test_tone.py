"""Output tone (oldphoto_core.stages.tone): the levels stretch, the anchoring to the input's
low frequencies, and which tone a Restorer uses for which model set."""

from __future__ import annotations

import json

import pytest
import torch

from oldphoto_core import Restorer
from oldphoto_core.errors import CheckpointError, InputError
from oldphoto_core.models import ModelStore
from oldphoto_core.stages.tone import (
    ANCHOR_CLIP,
    anchor_tone,
    apply_tone,
    fill_from_surroundings,
    reference_stretch,
    stretch_levels,
)


def _photo(seed: int = 0, size: tuple[int, int] = (48, 64)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, *size, generator=g)


def test_reference_stretch_maps_min_and_max_of_each_item_to_0_and_1():
    x = _photo() * 0.5 + 0.2
    y = reference_stretch(x)
    for item in y:
        assert item.min() == 0 and item.max() == 1
    # an affine map of the values: ranks and ratios of differences are kept
    item, src = y[0].flatten(), x[0].flatten()
    assert torch.allclose((item - item[0]) * (src.max() - src.min()), src - src[0], atol=1e-6)


def test_clipped_levels_match_the_exact_quantiles_within_one_histogram_bin():
    x = _photo(1).pow(2)  # skewed values
    clip = 0.02
    y = stretch_levels(x, clip)
    for xi, yi in zip(x, y, strict=True):
        lo, hi = torch.quantile(xi.flatten(), torch.tensor([clip, 1 - clip]))
        expected = ((xi.clamp(lo, hi) - lo) / (hi - lo))
        # the histogram's quantiles are off by at most one bin (1/4096) at each end, which
        # moves a stretched value by at most 2 bins relative to the range
        assert (yi - expected).abs().max() <= 2 / 4096 / float(hi - lo) + 1e-6


def test_stretch_levels_refuses_a_clip_of_half_or_more():
    with pytest.raises(InputError):
        stretch_levels(_photo(), 0.5)


def test_anchoring_an_image_to_itself_changes_nothing():
    x = _photo(2)
    assert torch.allclose(anchor_tone(x, x), x, atol=1e-6)


def test_anchoring_gives_back_the_source_tone_the_encoder_cannot_see():
    """A faded, darkened copy decoded with the right detail but the wrong global tone: the
    anchored result has the source's global tone again (means agree closely)."""
    source = _photo(3, (64, 64))
    wrong = (source * 0.5 + 0.4).clamp(0, 1)  # what a decoder guessing the tone might give
    anchored = anchor_tone(wrong, source)
    assert (anchored.mean((2, 3)) - source.mean((2, 3))).abs().max() < 0.02
    assert (wrong.mean((2, 3)) - source.mean((2, 3))).abs().max() > 0.1


def test_masked_source_pixels_lend_no_tone():
    image, source = _photo(4), _photo(5)
    mask = torch.zeros(2, 1, 48, 64)
    mask[:, :, 20:24, :] = 1  # a horizontal scratch
    a = anchor_tone(image, source, mask)
    scratched = source.clone()
    scratched[:, :, 20:24, :] = 1.0  # the scratch painted white in the input
    b = anchor_tone(image, scratched, mask)
    assert torch.equal(a, b)


def test_a_wide_masked_region_takes_the_tone_of_its_surroundings():
    """A hole far wider than the anchoring's Gaussian: its tone comes from around it, not
    from the decoder's guess (which painted dark blotches over bright areas), and a photo
    masked everywhere keeps the decoder's own tone, having none to lend."""
    source = torch.full((1, 3, 64, 80), 0.8)
    source[:, :, 16:48, 20:60] = 0.0  # what the masked input holds there must not matter
    decoded = torch.full((1, 3, 64, 80), 0.2)  # right detail (none), wrong global tone
    mask = torch.zeros(1, 1, 64, 80)
    mask[:, :, 16:48, 20:60] = 1
    anchored = anchor_tone(decoded, source, mask)
    # constants stay constants through every weighted mean: a few float32 roundings apart
    assert torch.allclose(anchored, torch.full_like(anchored, 0.8), atol=1e-5)
    everywhere = anchor_tone(decoded, source, torch.ones(1, 1, 64, 80))
    assert torch.allclose(everywhere, decoded, atol=1e-5)


@pytest.mark.parametrize("size", [(48, 64), (17, 203), (1, 5), (1, 1)])
def test_fill_from_surroundings_keeps_what_it_trusts(size):
    g = torch.Generator().manual_seed(8)
    values = torch.rand(2, 3, *size, generator=g)
    weight = (torch.rand(2, 1, *size, generator=g) > 0.7).float()
    weight[1] = 0  # an item with nothing to trust comes back as it was
    filled = fill_from_surroundings(values, weight)
    assert filled.shape == values.shape and torch.isfinite(filled).all()
    trusted = weight.expand_as(values) > 0
    assert torch.equal(filled[trusted], values[trusted])
    assert torch.equal(filled[1], values[1])


def test_anchor_tone_needs_a_source_and_equal_sizes():
    with pytest.raises(InputError, match="source"):
        apply_tone(_photo(), "anchor")
    with pytest.raises(InputError, match="differ"):
        anchor_tone(_photo(), _photo(0, (32, 32)))
    with pytest.raises(InputError, match="tone"):
        apply_tone(_photo(), "sepia")


def test_apply_tone_anchor_stretches_the_levels_after_anchoring():
    image, source = _photo(6), _photo(7) * 0.6 + 0.2
    y = apply_tone(image, "anchor", source)
    assert torch.equal(y, stretch_levels(anchor_tone(image, source), ANCHOR_CLIP))


def test_the_restorer_uses_the_tone_its_model_set_asks_for(tiny_bundled_set):
    restorer = Restorer()
    assert restorer.tone == "anchor"  # the bundled set's manifest says so
    assert Restorer(tone="reference").tone == "reference"
    with pytest.raises(InputError, match="tone"):
        Restorer(tone="sepia")
    photo = _photo(8, (32, 32))[:1]
    anchored = restorer.restore(photo, scratch="off")
    plain = Restorer(tone="none").restore(photo, scratch="off")
    expected = apply_tone(plain.working["restored"], "anchor", plain.working["input"])
    assert torch.allclose(anchored.working["stretched"], expected, atol=1e-6)


def test_published_layout_folders_keep_the_reference_tone(tmp_path):
    assert ModelStore(tmp_path).tone == "reference"
    assert ModelStore.from_files({}).tone == "reference"


def test_a_manifest_with_an_unknown_tone_is_refused(tmp_path, tiny_bundled_set):
    folder = next(iter(tiny_bundled_set.values())).parent
    manifest = json.loads((folder / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps({**manifest, "tone": "sepia"}))
    with pytest.raises(CheckpointError, match="tone"):
        ModelStore(tmp_path)


def _bundled_networks():
    from oldphoto_core.models import resolve_models
    store = resolve_models()
    return store.get("vae_a"), store.get("mapping_quality"), store.get("vae_b_quality")


@pytest.mark.parametrize("fit", ["resize", "pad"])
def test_the_latent_carries_the_encoded_photo_and_its_mask_at_the_working_size(
        tiny_bundled_set, fit):
    """encode_old keeps the photo as it was before its scratches were painted (what 'anchor'
    takes its tone from) and the mask, both at the working size, and both survive the
    mapping, batch cuts and joins."""
    from oldphoto_core.stages import OldPhotoLatent, encode_old, map_latent
    vae_a, mapping, _ = _bundled_networks()
    photo = _photo(9, (30, 42))  # not multiples of 4: resized or padded to 32 x 44 / 32 x 44
    mask = torch.zeros(2, 1, 30, 42)
    mask[:, :, 10:12, :] = 1
    lat = encode_old(photo, vae_a, mask=mask, fit=fit)
    assert lat.source.shape == (2, 3, *lat.working_size)
    assert lat.source_mask.shape == (2, 1, *lat.working_size)
    assert set(lat.source_mask.unique().tolist()) == {0.0, 1.0}
    if fit == "pad":  # no resampling: the photo itself, unpainted, then the reflected border
        assert torch.equal(lat.source[..., :30, :42], photo)
    plain = encode_old(photo, vae_a, fit=fit)
    assert torch.equal(lat.source, plain.source) and plain.source_mask is None
    clean = map_latent(lat, mapping)
    assert clean.source is lat.source and clean.source_mask is lat.source_mask
    rejoined = OldPhotoLatent.cat([clean.items(0, 1), clean.items(1, 2)])
    assert torch.equal(rejoined.samples, clean.samples)
    assert torch.equal(rejoined.source, clean.source)
    assert torch.equal(OldPhotoLatent.from_dict(clean.as_dict()).source_mask, clean.source_mask)


def test_decode_clean_anchors_to_the_photo_the_latent_carries(tiny_bundled_set):
    """decode_clean's 'anchor' is apply_tone at the working size with the carried photo and
    mask (the Restorer's rule), then the size is given back; a latent without a photo is
    refused rather than anchored to nothing."""
    from dataclasses import replace

    from oldphoto_core.io.resample import pil_resize
    from oldphoto_core.stages import decode_clean, encode_old, map_latent
    vae_a, mapping, vae_b = _bundled_networks()
    photo = _photo(10, (30, 42))
    mask = torch.zeros(2, 1, 30, 42)
    mask[:, :, 5:7, :] = 1
    clean = map_latent(encode_old(photo, vae_a, mask=mask), mapping)
    got = decode_clean(clean, vae_b, tone="anchor")
    plain = decode_clean(clean, vae_b, tone="none", restore_size=False)
    expected = pil_resize(apply_tone(plain, "anchor", clean.source, clean.source_mask),
                          (30, 42), "bicubic")
    assert torch.equal(got, expected)
    assert torch.equal(decode_clean(clean, vae_b),  # the default stays the reference's
                       decode_clean(clean, vae_b, tone="reference"))
    with pytest.raises(InputError, match="carries none"):
        decode_clean(replace(clean, source=None), vae_b, tone="anchor")
    with pytest.raises(InputError, match="tone"):
        decode_clean(clean, vae_b, tone="sepia")
