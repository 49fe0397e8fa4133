"""Data-parallel training: two gloo processes on the CPU, only rank 0 writes.

The two ranks are started the way torchrun starts them - the same command line, with
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in the
environment - but forked from this process instead of launched as fresh interpreters, which
saves two imports of PyTorch (about 10 s of the suite's budget on two cores).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import socket

import torch

from oldphoto_core.loading import load_model


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, argv: list[str]) -> None:
    """What torchrun's worker does: its environment, then ``python -m training ARGV``."""
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    from training.cli import main
    os._exit(main(argv))


def launch(argv: list[str], world: int = 2, timeout: float = 120) -> list[int | None]:
    """Run ``argv`` in ``world`` forked ranks; return their exit codes."""
    ctx = multiprocessing.get_context("fork")
    port = _free_port()
    procs = [ctx.Process(target=_rank_main, args=(r, world, port, argv)) for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    for p in procs:
        if p.is_alive():
            p.kill()
    return [p.exitcode for p in procs]


def test_two_process_gloo_run_completes_the_expected_steps(photos, tmp_path, tiny):
    out = tmp_path / "ddp"
    cmd = ["mapping", "--variant", "quality", "--data", str(photos), "--out", str(out), *tiny,
           "--workers", "0", "--device", "cpu", "--sample-every", "1"]
    # a VAE pair is the cheapest input of a stage with a generator and a critic: make one
    vaes = tmp_path / "vaes"
    vaes.mkdir()
    from oldphoto_core.arch import OldPhotoVAE
    from oldphoto_core.loading import save_safetensors
    torch.manual_seed(0)
    for name in ("old", "clean"):
        save_safetensors(OldPhotoVAE(channels=4).state_dict(), vaes / f"{name}.safetensors",
                         arch_id="vae")
    cmd += ["--vae-old", str(vaes / "old.safetensors"),
            "--vae-clean", str(vaes / "clean.safetensors")]
    assert launch(cmd) == [0, 0]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]          # written by rank 0 alone
    state = torch.load(out / "resume.state", weights_only=True)
    assert state["step"] == 2 and state["world"] == 2 and len(state["rng"]) == 2
    assert state["sample"] == 2 * 2 * 2                    # steps x processes x batch
    desc = load_model(out / "mapping_quality.safetensors", expect="mapping_quality")
    assert desc.metadata["oldphoto.training.processes"] == "2"
    assert sorted(p.name for p in (out / "samples").iterdir()) == [
        "step_0000001.png", "step_0000002.png"]
    # the two ranks drew different noise: their RNG states differ
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])
