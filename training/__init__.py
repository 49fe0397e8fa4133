"""Training of every network of the paper: ``python -m training STAGE --data DIR --out DIR``.

Stages (one module each under :mod:`training.stages`): ``vae_clean`` (VAE_2, clean photos),
``vae_old`` (VAE_1, real and synthetic old photos), ``mapping`` (latent translation, three
variants), ``detector`` (scratch U-Net) and ``face`` (SPADE face generator). Shared parts:
:mod:`training.data` (folder -> crops -> damage on the fly, in worker processes),
:mod:`training.losses`, :mod:`training.discriminators`, :mod:`training.loop` (step, log,
sample, checkpoint, exact resume) and :mod:`training.distributed` (torchrun).

The networks themselves live in :mod:`oldphoto_core.arch`; this package imports the engine,
never the other way round, and writes generators in the published key layout so that every
loader of the engine accepts them unchanged.
"""

__all__: list[str] = []
