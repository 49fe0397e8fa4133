"""Run a recipe: collect its photos, train its steps in order, assemble the model set.

A recipe is a list of :class:`Step` s, each one ordinary ``python -m training STAGE`` run
(the same :class:`~training.config.TrainConfig`, the same loop) in ``OUT/runs/<step>/``. The
runner is resumable at any point: a finished step is skipped, an interrupted one continues
from its last resume state (``save_every`` steps at most are redone), so the same command,
run again, picks up where the last one stopped, in a later session if need be. On CPU the
result does not depend on how often it was interrupted (the loop's exact resume).

When every step is done, ``OUT/models/`` gets the generators under their bundled names, a
``manifest.json`` (role -> file, what :mod:`oldphoto_core.models` reads) and the data card
``CARD.md`` (photos with origin and licence, settings, compute time and machine).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import TrainConfig
from ..errors import TrainingError
from ..loop import STATE_FILE, train
from ..stages import STAGE_CLASSES
from .photos import HELD_OUT, TRAIN, collect

__all__ = ["Recipe", "Step", "run_recipe", "compute_seconds"]

MANIFEST = "manifest.json"
CARD = "CARD.md"


@dataclass(frozen=True)
class Step:
    """One training run of a recipe.

    Attributes:
        name: the run's folder under ``OUT/runs/``; later steps refer to its generator as
            ``"@name"`` in their options.
        stage: the training stage.
        options: :class:`~training.config.TrainConfig` fields (``data``/``out``/``device``/
            ``workers`` are the runner's).
        bundled: file name in the model set -> the roles that file serves.
    """

    name: str
    stage: str
    options: dict[str, Any]
    bundled: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def ref(self, option: str) -> str | None:
        """The earlier step an option names (``"@name"`` -> ``"name"``), else None."""
        return step_ref(self.options.get(option))

    def refs(self) -> list[str]:
        """Every earlier step this one takes a network from."""
        return [n for v in self.options.values() if (n := step_ref(v)) is not None]


def step_ref(value: Any) -> str | None:
    """``"@name"`` -> ``"name"``: an option value naming an earlier step's generator."""
    return value[1:] if isinstance(value, str) and value.startswith("@") else None


@dataclass(frozen=True)
class Recipe:
    """A model set's recipe: ``steps`` in order, and the settings its manifest gives
    restorations: the output ``tone`` (:mod:`oldphoto_core.stages.tone`) and whether
    ``scratch="auto"`` may take the set's scratch path (``auto_scratch``). A set with a
    detector also gets the detector threshold of best F1 on the training photos
    (:mod:`.calibrate`, at long side ``calibrate_max_side``)."""

    name: str
    steps: tuple[Step, ...]
    tone: str = "reference"
    auto_scratch: bool = True
    calibrate_max_side: int = 512


def _generator(out: Path, step: Step) -> Path:
    """The generator file a finished step wrote (there is exactly one ``.safetensors``)."""
    files = sorted((out / "runs" / step.name).glob("*.safetensors"))
    if len(files) != 1:
        raise TrainingError(f"step {step.name}: expected one generator in "
                            f"{out / 'runs' / step.name}, found {[f.name for f in files]}")
    return files[0]


def _config(recipe: Recipe, recipe_out: Path, step: Step, *, device: str,
            workers: int) -> TrainConfig:
    """The step's config; ``"@name"`` options become the generator of that earlier step."""
    earlier = {s.name: s for s in recipe.steps[:recipe.steps.index(step)]}

    def resolve(value: Any) -> Any:
        name = step_ref(value)
        if name is None:
            return value
        if name not in earlier:
            raise TrainingError(f"step {step.name} refers to {value}, which is no earlier step")
        return _generator(recipe_out, earlier[name])

    opts = {k: resolve(v) for k, v in step.options.items()}
    cfg = TrainConfig(stage=step.stage, data=recipe_out / "data" / "train",
                      out=recipe_out / "runs" / step.name, device=device, workers=workers,
                      **opts)
    return cfg.resolved()


def _saved_step(run_dir: Path) -> int:
    """The step of the run's resume state (0 without one), read without the tensors' cost
    mattering (the states of the default recipe are a few MB)."""
    from ..checkpoint import load_state
    path = run_dir / STATE_FILE
    return int(load_state(path)["step"]) if path.is_file() else 0


def compute_seconds(metrics: Path) -> float:
    """Training time of a run from its ``metrics.jsonl``: the sum of ``sec_per_step`` times
    the steps of each logged interval. Robust to interruptions: an interval logged twice
    (redone after a resume) counts once, the later record winning."""
    if not metrics.is_file():
        return 0.0
    per_step: dict[int, float] = {}
    for line in metrics.read_text().splitlines():
        try:
            rec = json.loads(line)
            per_step[int(rec["step"])] = float(rec["sec_per_step"])
        except (ValueError, KeyError, TypeError):
            continue
    total, prev = 0.0, 0
    for s in sorted(per_step):
        total += per_step[s] * (s - prev)
        prev = s
    return total


def _machine(device: str) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    where = f"{cpu}, {os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads"
    if device.startswith("cuda") and torch.cuda.is_available():
        where += f", GPU {torch.cuda.get_device_name()}"
    return f"{where}; torch {torch.__version__}, {platform.system()} {platform.release()}"


def _record(out: Path) -> dict[str, Any]:
    path = out / "recipe.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_record(out: Path, record: dict[str, Any]) -> None:
    tmp = out / "recipe.json.tmp"
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    tmp.replace(out / "recipe.json")


def _prepare_data(recipe: Recipe, out: Path, record: dict[str, Any],
                  log: Callable[[str], None]) -> None:
    digests = collect(TRAIN, out / "data" / "train")
    held = collect(HELD_OUT, out / "data" / "held-out")
    if "photos" in record and record["photos"] != digests:
        changed = sorted(k for k in digests if record["photos"].get(k) != digests[k])
        raise TrainingError(f"the training photos differ from the ones this run started with "
                            f"({', '.join(changed)}): another package version? Start a new "
                            f"--out to train on them")
    record.update(recipe=recipe.name, photos=digests, held_out=held)
    log(f"{len(digests)} training photos in {out / 'data' / 'train'}, {len(held)} held out "
        f"in {out / 'data' / 'held-out'}")


def run_recipe(recipe: Recipe, out: Path, *, device: str = "cpu", workers: int = 1,
               log: Callable[[str], None] = print) -> Path | None:
    """Train every step of ``recipe`` under ``out`` (resuming), then assemble ``out/models``.

    Returns:
        the model set folder, or ``None`` when a step stopped early (its ``stop_after``).
    Raises:
        TrainingError: a missing photo package, a step that fails, changed photos.
    """
    out.mkdir(parents=True, exist_ok=True)
    record = _record(out)
    _prepare_data(recipe, out, record, log)
    record.setdefault("machines", [])
    machine = _machine(device)
    if machine not in record["machines"]:
        record["machines"].append(machine)
    _write_record(out, record)
    for step in recipe.steps:
        if step.stage not in STAGE_CLASSES:
            raise TrainingError(f"step {step.name}: unknown stage {step.stage!r}")
        cfg = _config(recipe, out, step, device=device, workers=workers)
        done = _saved_step(cfg.out)
        if done >= cfg.steps:
            log(f"[{step.name}] done ({done} steps)")
            continue
        log(f"[{step.name}] {'continuing at step ' + str(done) if done else 'starting'} "
            f"-> {cfg.steps} steps")
        t0 = time.perf_counter()
        train(dataclasses.replace(cfg, resume="auto") if done else cfg)
        reached = _saved_step(cfg.out)
        if reached < cfg.steps:  # a stop_after in the step's options: later steps must wait
            log(f"[{step.name}] stopped at step {reached} of {cfg.steps}; run the same "
                "command again to continue")
            return None
        log(f"[{step.name}] finished in {time.perf_counter() - t0:.0f} s")
    return assemble(recipe, out, record)


def assemble(recipe: Recipe, out: Path, record: dict[str, Any]) -> Path:
    """Copy the generators into ``out/models`` under their bundled names, with the manifest
    and the data card."""
    models = out / "models"
    models.mkdir(exist_ok=True)
    roles: dict[str, str] = {}
    rows = []
    for step in recipe.steps:
        src = _generator(out, step)
        for name, served in step.bundled.items():
            shutil.copyfile(src, models / name)
            roles.update({role: name for role in served})
            rows.append((step, name, served, src))
    manifest: dict[str, Any] = {"set": recipe.name, "roles": dict(sorted(roles.items())),
                                "tone": recipe.tone}
    if "scratch_detector" in roles:
        from .calibrate import detector_threshold
        threshold, f1 = detector_threshold(models / roles["scratch_detector"],
                                           sorted((out / "data" / "train").iterdir()),
                                           max_side=recipe.calibrate_max_side)
        manifest["scratch_threshold"] = threshold
        record["scratch_threshold"] = {"threshold": threshold, "f1": f1}
    if not recipe.auto_scratch:
        manifest["auto_scratch"] = False
    (models / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    from .card import write_card
    write_card(models / CARD, recipe, out, record, rows)
    return models
