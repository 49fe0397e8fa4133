"""One training loop for every stage: step, log, sample, checkpoint, exact resume.

The loop is flat (nanoGPT's): build the stage from the config, restore a resume state if
asked, then for each batch call ``stage.train_step``, advance the schedules, and at their
intervals append metrics, write a sample grid, and save the resume state with the generator.
Everything a later step depends on is in the resume state (see :mod:`training.checkpoint`), and
the data a step sees depends only on the seed and the step (see :mod:`training.data.order`), so
``N`` steps + ``--resume`` + ``M`` steps equals ``N + M`` steps bit for bit (one process, CPU).
"""

from __future__ import annotations

import math
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .checkpoint import capture_rng, load_state, restore_rng, save_state
from .config import TrainConfig
from .data import StepBatchSampler, make_loader
from .distributed import Context, barrier, gather, mean_across, setup, teardown
from .errors import TrainingError
from .export import verify, write_generator
from .records import LossMeter, MetricsWriter, RunLog, write_grid
from .schedule import make_scheduler
from .stages import Stage, build_stage

_IDLE_SCHEDULE_WARNING = r"Detected call of `lr_scheduler\.step\(\)` before `optimizer\.step\(\)`"

__all__ = ["train", "RunResult", "STATE_FILE", "PREVIEW_ITEMS"]

STATE_FILE = "resume.state"
PREVIEW_ITEMS = 4
#: Settings a resumed run must share with the run that wrote the state.
_FIXED_ON_RESUME = ("stage", "width", "variant", "seed", "face_size")


@dataclass(frozen=True)
class RunResult:
    """Where a run ended: its last step and the generator file (rank 0; None elsewhere)."""

    step: int
    generator: Path | None


@dataclass
class _Position:
    step: int = 0
    sample: int = 0   # global sample counter reached


def train(cfg: TrainConfig) -> RunResult:
    """Run ``cfg`` to ``cfg.steps`` (or ``--stop-after``) in this process (and its torchrun
    peers). Raises :class:`~training.errors.TrainingError` with a clear message on bad input."""
    ctx = setup(cfg.device)
    try:
        return _train(cfg, ctx)
    finally:
        teardown(ctx)


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _train(cfg: TrainConfig, ctx: Context) -> RunResult:
    if ctx.main:
        cfg.out.mkdir(parents=True, exist_ok=True)
    barrier(ctx)
    log = RunLog(cfg.out, ctx.main)
    if ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    _seed(cfg.seed)                      # identical initial weights on every rank
    stage = build_stage(cfg, ctx, log)
    schedulers = {name: make_scheduler(opt, cfg.steps) for name, opt in stage.optimizers.items()}
    _seed(cfg.seed * 1009 + 17 * ctx.rank + 1)   # per-rank training noise
    pos = _resume(cfg, ctx, stage, schedulers, log) if cfg.resume else _Position()
    if ctx.main:
        cfg.write(cfg.out / "config.json")
        log(f"{cfg.stage}: steps {pos.step} -> {cfg.steps}, batch {cfg.batch} x {ctx.world} "
            f"process(es), crop {cfg.crop}, width {cfg.width}, device {ctx.device}, "
            f"{stage.data_size} training images")
    stop = cfg.steps if cfg.stop_after is None else min(cfg.steps, pos.step + cfg.stop_after)
    start = pos.step
    if start >= stop:
        raise TrainingError(f"the run is already at step {start} of --steps {cfg.steps}; "
                            "raise --steps to train further")
    sampler = StepBatchSampler(start_step=start, stop_step=stop, batch=cfg.batch,
                               world=ctx.world, rank=ctx.rank, base_step=start,
                               base_sample=pos.sample)
    loader = make_loader(stage.dataset, sampler, workers=cfg.workers,
                         pin_memory=ctx.device.type == "cuda")
    preview = _preview_batch(stage, cfg, ctx) if (ctx.main and cfg.sample_every) else None
    metrics = MetricsWriter(cfg.out / "metrics.jsonl") if ctx.main else None
    meter = LossMeter()
    stage.train_mode(True)
    step, t_last, s_last = start, time.perf_counter(), start
    path = cfg.out / stage.export().filename
    with tqdm(total=stop, initial=start, desc=cfg.stage, disable=not ctx.main,
              dynamic_ncols=True, leave=True) as bar:
        for batch in loader:
            batch = {k: v.to(ctx.device, non_blocking=True) for k, v in batch.items()}
            losses = stage.train_step(batch, step)
            with warnings.catch_warnings():
                # a critic whose loss weight is 0 never steps its optimizer, yet its schedule
                # keeps pace with the others (one resume state layout for every run): that
                # is what torch warns about here, and it is intended
                warnings.filterwarnings("ignore", message=_IDLE_SCHEDULE_WARNING)
                for s in schedulers.values():
                    s.step()
            step += 1
            meter.add(losses)
            bar.update(1)
            if step % cfg.log_every == 0 or step == stop:
                now = time.perf_counter()
                values = mean_across(meter.pop(), ctx)
                _check_finite(values, step)
                values["lr"] = next(iter(stage.optimizers.values())).param_groups[0]["lr"]
                values["sec_per_step"] = (now - t_last) / max(1, step - s_last)
                t_last, s_last = now, step
                if metrics is not None:
                    metrics.write(step, values)
                    bar.set_postfix({k: f"{values[k]:.3g}" for k in list(values)[:3]})
            if preview is not None and (step % cfg.sample_every == 0 or step == stop):
                _write_samples(stage, preview, cfg.out / "samples" / f"step_{step:07d}.png")
            if step == stop or (cfg.save_every and step % cfg.save_every == 0):
                samples = pos.sample + (step - start) * ctx.world * cfg.batch
                path = _checkpoint(cfg, ctx, stage, schedulers, step, samples)
    if step != stop:
        raise TrainingError(f"the data loader ended at step {step} before step {stop}")
    generator = None
    if ctx.main:
        export = stage.export()
        desc = verify(path, export.arch_id)
        log(f"wrote {path} ({desc.arch.title}, role {export.role}; recognised and loaded "
            f"strictly) and {cfg.out / STATE_FILE} at step {step}")
        generator = path
    return RunResult(step=step, generator=generator)


def _check_finite(values: dict[str, float], step: int) -> None:
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if bad:
        raise TrainingError(f"loss {', '.join(bad)} is not finite at step {step}; lower --lr "
                            "or check the data (resume from the last state with --resume)")


def _preview_batch(stage: Stage, cfg: TrainConfig, ctx: Context) -> dict[str, torch.Tensor]:
    """A fixed batch of the preview stream, picked with a generator of its own."""
    g = torch.Generator().manual_seed(cfg.seed)
    ks = torch.randint(0, 1 << 30, (min(PREVIEW_ITEMS, cfg.batch),), generator=g).tolist()
    items = [stage.dataset.preview(k) for k in ks]
    return {key: torch.stack([it[key] for it in items]).to(ctx.device) for key in items[0]}


def _write_samples(stage: Stage, batch: dict[str, torch.Tensor], path: Path) -> None:
    """Sample grid in eval mode without gradients; training state is left as it was."""
    stage.train_mode(False)
    try:
        with torch.no_grad():
            columns = stage.sample(batch)
    finally:
        stage.train_mode(True)
    write_grid(columns, path)


def _facts(cfg: TrainConfig, ctx: Context, stage: Stage, step: int) -> dict[str, object]:
    return {"stage": cfg.stage, "variant": cfg.variant, "step": step, "steps": cfg.steps,
            "width": cfg.width, "crop": cfg.crop, "batch": cfg.batch, "processes": ctx.world,
            "data_size": stage.data_size, "seed": cfg.seed, "lr": cfg.lr,
            "face_size": cfg.face_size if cfg.stage == "face" else None}


def _checkpoint(cfg: TrainConfig, ctx: Context, stage: Stage, schedulers: dict, step: int,
                samples: int) -> Path:
    """Save the resume state and the generator (rank 0 writes; every rank gives its RNG)."""
    rng = gather(capture_rng(), ctx)
    path = cfg.out / stage.export().filename
    if ctx.main:
        state = {
            "stage": cfg.stage, "step": step, "sample": samples, "world": ctx.world,
            "batch": cfg.batch, "config": cfg.to_dict(),
            "networks": {k: m.state_dict() for k, m in stage.networks.items()},
            "optimizers": {k: o.state_dict() for k, o in stage.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
            "rng": rng,
        }
        save_state(state, cfg.out / STATE_FILE)
        path = write_generator(stage.export(), cfg.out, _facts(cfg, ctx, stage, step))
    barrier(ctx)
    return path


def _resume(cfg: TrainConfig, ctx: Context, stage: Stage, schedulers: dict,
            log: RunLog) -> _Position:
    """Restore a resume state into the freshly built stage; return where it stopped."""
    path = cfg.out / STATE_FILE if cfg.resume in (None, "auto") else Path(cfg.resume)
    state = load_state(path)
    saved = state["config"]
    for key in _FIXED_ON_RESUME:
        now = cfg.to_dict()[key]
        if saved.get(key) != now:
            raise TrainingError(f"--resume: {path} was written with {key}={saved.get(key)!r}, "
                                f"this run has {key}={now!r}; they must match")
    try:
        for name, net in stage.networks.items():
            net.load_state_dict(state["networks"][name], strict=True)
        for name, opt in stage.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        for name, sch in schedulers.items():
            sch.load_state_dict(state["schedulers"][name])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise TrainingError(f"--resume: {path} does not fit this run's networks: {exc}") from exc
    if state["world"] == ctx.world:
        restore_rng(state["rng"][ctx.rank])
    else:
        _seed(cfg.seed * 1009 + 17 * ctx.rank + 1 + state["step"])
        log(f"--resume: the state was written by {state['world']} process(es), this run has "
            f"{ctx.world}: the random streams restart (not bit-identical)")
    if state["batch"] != cfg.batch or state["world"] != ctx.world:
        log(f"--resume: batch x processes changed ({state['batch']} x {state['world']} -> "
            f"{cfg.batch} x {ctx.world}); the data continues from sample {state['sample']}")
    if saved.get("steps") != cfg.steps:
        log(f"--resume: --steps changed ({saved.get('steps')} -> {cfg.steps}); the "
            "learning-rate schedule follows the new total")
    log(f"resumed from {path} at step {state['step']}")
    return _Position(step=int(state["step"]), sample=int(state["sample"]))
