"""The ``default`` recipe: the small model set that ships inside ``oldphoto_core``.

Reduced widths of the published architectures, trained on the package photos of
:mod:`training.recipes.photos`, sized so that two CPU cores train the whole set in hours, not
weeks, and the five files stay well under 30 MB:

=====================  =========  ======  ==================================================
step                   network    width   what it stands for
=====================  =========  ======  ==================================================
``vae_clean``          VAE        32      VAE_B (the decoder), first round
``vae_old``            VAE        32      VAE_A_quality (the encoder)
``detector``           U-Net      16      FT_Epoch_latest (scratch detection)
``mapping_scratch``    mapping    64      mapping_scratch (partial non-local), first round
``mapping_quality``    mapping    64      mapping_quality, first round
``vae_clean_ft``       VAE        32      VAE_B, fine-tuned: VAE_B_quality and VAE_B_scratch
``mapping_quality_ft`` mapping    64      mapping_quality, fine-tuned on it
``mapping_scratch_ft`` mapping    64      mapping_scratch, fine-tuned on it
=====================  =========  ======  ==================================================

Objective: the paper's fidelity terms (KL + alpha L1 for the VAEs, KL at MUNIT's weight 0.01;
lambda1 latent L1 for the
mappings, weighted CE + focal for the detector) with the image discriminators off
(``gan_weight=0``). On two cores the discriminators would cost two thirds of every step; for a
small default model, fidelity (PSNR, SSIM) is the better use of the time, and GAN texture is
what the published weights are for. No VGG term (its weights cannot be fetched here). 128 px
crops (the latent is 32 x 32, so the scratch mapping's attention sees a whole crop), batch 8,
Adam at 5e-4 (the paper's 2e-4 is tuned for GAN training; fidelity-only training of small
networks converges faster with a larger step), constant for half the run, then decaying
linearly to zero. 4000 steps for the VAEs and 2000 for the detector (a full-resolution U-Net);
the mappings, which only translate between the frozen VAEs' latents, 1500 (quality) and 1000
(scratch: its attention makes a step cost twice as much). A second round fine-tunes the
clean-photo VAE 3000 steps more, then both mappings on its latents (quality 2000 steps more,
scratch 1000), each at half the step size. About seven hours on two CPU cores, over two
sessions if need be (the runner resumes). The steps are independent once
their inputs exist, so the detector and each mapping can also run beside another step (two
processes of one thread each on two cores). Colour channels are permuted at random per crop
(``color_augment``): of the nine training photos six are grey and the others mostly red,
orange and blue, and a first run's VAE turned every green brown.

The set's manifest asks for the ``"anchor"`` output tone: the VAEs' encoders cannot see a
photo's global brightness, contrast or fade (see :mod:`oldphoto_core.stages.tone`), and nine
photos teach the decoder too little to guess them, so restorations take the input's low
frequencies and stretch the levels.
"""

from __future__ import annotations

from .runner import Recipe, Step

__all__ = ["DEFAULT"]

_COMMON = {"crop": 128, "batch": 8, "seed": 0, "lr": 5e-4, "gan_weight": 0.0,
           "color_augment": True, "log_every": 25, "sample_every": 500, "save_every": 100}
#: KL weight of the VAEs: MUNIT's (whose reduced VAE the reference follows) next to an L1
#: reconstruction at weight 10. The reference's weight 1 pairs with GAN and VGG terms; with L1
#: alone it holds the latent at mean(mu^2) ~ 0.4 against unit noise, and the reconstructions
#: stay blurred (seen at step 500 of a first run).
_VAE = {"width": 32, "steps": 4000, "kl_weight": 0.01}
#: Fine-tuning rounds: a new data order (seed 1) and half the first round's step size.
_SECOND_ROUND = {"seed": 1, "lr": 2.5e-4, "sample_every": 1000}

DEFAULT = Recipe(
    name="default",
    steps=(
        Step("vae_clean", "vae_clean", {**_COMMON, **_VAE, "variant": "quality"}),
        # the shipped VAE_A was trained before --damage-scale existed: its synthetic old photos
        # have defects at the crop's scale, which this pins so that the recipe still makes it
        Step("vae_old", "vae_old", {**_COMMON, **_VAE, "damage_scale": "crop"},
             bundled={"VAE_A.safetensors": ("vae_a",)}),
        # the detector learns at the scale restoration runs it (photos brought to a short side
        # of 256) from the damage that still shows; its threshold is calibrated on the training
        # photos when the set is assembled (calibrate.py)
        Step("detector", "detector", {**_COMMON, "width": 16, "steps": 2000},
             bundled={"scratch_detector.safetensors": ("scratch_detector",)}),
        Step("mapping_scratch", "mapping",
             {**_COMMON, "width": 64, "steps": 1000, "variant": "scratch",
              "vae_old": "@vae_old", "vae_clean": "@vae_clean"}),
        Step("mapping_quality", "mapping",
             {**_COMMON, "width": 64, "steps": 1500, "variant": "quality",
              "vae_old": "@vae_old", "vae_clean": "@vae_clean"}),
        # the second round: what the clean-photo VAE loses of a photo's detail caps every
        # restoration (docs/models.md, "Measured quality"), so it trains on from where it
        # stopped, with a fresh data order, half the step size and a tenth of the KL weight
        # (the latent may carry more detail through the unit noise), and the mapping follows
        # it into its refined latent space
        Step("vae_clean_ft", "vae_clean",
             {**_COMMON, **_VAE, **_SECOND_ROUND, "steps": 3000, "kl_weight": 0.001,
              "variant": "quality", "init": "@vae_clean"},
             bundled={"VAE_B.safetensors": ("vae_b_quality", "vae_b_scratch")}),
        Step("mapping_quality_ft", "mapping",
             {**_COMMON, **_SECOND_ROUND, "width": 64, "steps": 2000,
              "variant": "quality", "init": "@mapping_quality",
              "vae_old": "@vae_old", "vae_clean": "@vae_clean_ft"},
             bundled={"mapping_quality.safetensors": ("mapping_quality",)}),
        Step("mapping_scratch_ft", "mapping",
             {**_COMMON, **_SECOND_ROUND, "width": 64, "steps": 1000,
              "variant": "scratch", "init": "@mapping_scratch",
              "vae_old": "@vae_old", "vae_clean": "@vae_clean_ft"},
             bundled={"mapping_scratch.safetensors": ("mapping_scratch",)}),
    ),
    tone="anchor",
    # the scratch path ships for the modes that ask for it (scratch="on", Detect Scratches),
    # but measured on the held-out photos it scores below the quality path (docs/models.md,
    # "The scratch detector"), so "auto" keeps to the quality path
    auto_scratch=False,
)
