"""A ComfyUI server that stays up under a queue: ``COMFYUI_PATH=... pytest -n 0 tests/e2e -s``.

One server (as in ``test_e2e_comfyui.py``: ``--cpu``, the pack symlinked, synthetic weights of
the parity kit) gets 100 prompts: valid small restorations (quality, scratch, scratch with
detection, the all-in-one node), prompts with bad inputs (a LoadImage of a missing file, a
missing checkpoint, a checkpoint of the wrong network in a loader, an image batch and a mask
batch that disagree, a latent batch and a mask batch that disagree, an image too small, the
scratch mapping without its mask, a latent mapped twice) and cancelled runs (``/interrupt``
while they run, ``/queue`` delete while they wait). Throughout, a thread polls
``/system_stats``. Checked: every bad prompt ends with our error naming the input and the
problem (a 400 with ``node_errors`` when validation can tell, else an ``execution_error`` of an
``oldphoto_core.errors`` type), every valid one completes with its images, every cancelled one
is interrupted or never runs, the server always answers, and its RSS after the queue is within
10 % of its RSS after the first valid run.

Then the cancel latency: a 512x512 scratch restoration is interrupted while the mapping's
partial non-local attention runs (seen on the websocket as the Latent Map node's progress); the
server must report ``execution_interrupted`` within 1 s.

The figures are printed (``-s``) and written to ``soak_figures.json`` in pytest's tmp folder.
"""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

import pytest
from comfy_e2e import COMFYUI, RUN_TIMEOUT, SKIP_REASON, Client, Events, start_comfyui
from soak_graphs import (
    BAD,
    CANCEL_SIZE,
    MIX,
    N_PROMPTS,
    Graph,
    scratch_graph,
    stripe_mask,
    valid,
    warmup,
)

pytestmark = [
    pytest.mark.comfyui,
    pytest.mark.skipif(not COMFYUI, reason=SKIP_REASON),
]

CLIENT_ID = "oldphoto-soak"
RSS_GROWTH = 1.10          # RSS at the end <= 1.10 x RSS after the first valid run
CANCEL_LATENCY = 1.0       # seconds from POST /interrupt to execution_interrupted
STATS_PERIOD = 0.25        # /system_stats poll period, seconds
STATS_TIMEOUT = 10.0       # a poll slower than this counts as "not answering"
SETTLE = 12.0              # idle seconds before reading the RSS (ComfyUI collects every 10 s)
QUEUE_TIMEOUT = 900

FIGURES: dict = {}


# -- watching the server ------------------------------------------------------------------------

class StatsPoller(threading.Thread):
    """Polls ``/system_stats`` (and the server's RSS) every STATS_PERIOD seconds."""

    def __init__(self, comfy: Client) -> None:
        super().__init__(name="system-stats", daemon=True)
        self.comfy = comfy
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.rss: list[int] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            t0 = time.monotonic()
            try:
                status, stats = self.comfy.request("/system_stats", timeout=STATS_TIMEOUT)
                if status != 200 or "system" not in stats:
                    self.failures.append(f"status {status}: {str(stats)[:200]}")
            except Exception as e:  # noqa: BLE001 - every failure to answer is recorded
                self.failures.append(f"{type(e).__name__}: {e}")
            self.latencies.append(time.monotonic() - t0)
            try:
                self.rss.append(self.comfy.rss())
            except (OSError, RuntimeError):
                pass
            self._halt.wait(max(0.0, STATS_PERIOD - (time.monotonic() - t0)))

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=STATS_TIMEOUT + 5)


def _settled_rss(comfy: Client) -> int:
    """The server's RSS once the queue is empty and ComfyUI had time for its periodic gc."""
    deadline = time.monotonic() + 120
    while True:
        status, q = comfy.request("/queue")
        if status == 200 and not q["queue_running"] and not q["queue_pending"]:
            break
        assert time.monotonic() < deadline, "the queue did not drain"
        time.sleep(0.5)
    time.sleep(SETTLE)
    return comfy.rss()


def _mib(n: int) -> float:
    return round(n / 2**20, 1)


@pytest.fixture(scope="module")
def soak_server(tmp_path_factory) -> Client:
    with start_comfyui(tmp_path_factory, "soak") as client:
        yield client


@pytest.fixture(scope="module")
def figures_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("soak") / "soak_figures.json"


def _publish(path: Path, **figures) -> None:
    FIGURES.update(figures)
    path.write_text(json.dumps(FIGURES, indent=1))
    print(f"\n[soak] figures -> {path}\n" + json.dumps(figures, indent=1))


# -- the soak -----------------------------------------------------------------------------------

def _message(entry: dict, event: str) -> dict | None:
    return next((d for e, d in entry["status"]["messages"] if e == event), None)


def _check_valid(comfy: Client, pid: str, g: Graph, entry: dict) -> None:
    assert entry["status"]["status_str"] == "success", \
        f"valid prompt {pid} failed: {json.dumps(entry['status'], indent=1)[:3000]}"
    for nid, node in g.nodes.items():
        if node["class_type"] == "SaveImage":
            images = entry["outputs"][nid]["images"]
            assert images, f"{pid}: SaveImage {nid} saved nothing"
            for item in images:
                assert (comfy.base / "output" / item["subfolder"] / item["filename"]).is_file()


def _check_error_text(kind: str, text: str) -> None:
    for needle in BAD[kind][3]:
        assert needle in text, f"{kind}: {needle!r} not in the error:\n{text[:2000]}"


def test_soak_queue_of_100_prompts(soak_server, figures_path):
    comfy = soak_server
    rng = random.Random(20240611)
    events = Events(comfy.url, CLIENT_ID)
    poller = StatsPoller(comfy)
    poller.start()
    t_start = time.monotonic()
    try:
        # 1. the first valid run, alone: the RSS reference
        first = warmup(0)
        pid = comfy.submit(first.nodes, CLIENT_ID)
        _check_valid(comfy, pid, first, comfy.wait(pid))
        rss_first = _settled_rss(comfy)

        # 2. the other 99, queued at once in a shuffled order
        plan = [k for k, n in MIX.items() for _ in range(n)]
        rng.shuffle(plan)
        # deletions must target prompts that are still waiting: none of the first ten
        early = [j for j in range(10) if plan[j] == "delete"]
        for j in early:
            late = next(x for x in range(len(plan) - 1, 9, -1) if plan[x] != "delete")
            plan[j], plan[late] = plan[late], plan[j]

        to_interrupt: set[str] = set()
        interrupted_sent: dict[str, float] = {}
        stop_canceller = threading.Event()
        lock = threading.Lock()

        def canceller() -> None:
            """Interrupt each target as soon as it starts (the websocket's execution_start;
            a target may also start before its id is known here, when the queue was empty)."""
            seen, started = 0, set()
            while not stop_canceller.is_set():
                try:
                    k, _, _, data = events.wait_for(
                        lambda typ, d: typ == "execution_start", timeout=0.1, since=seen)
                    seen = k + 1
                    started.add(data.get("prompt_id"))
                except AssertionError:
                    pass
                with lock:
                    due = (to_interrupt & started) - interrupted_sent.keys()
                for target in due:
                    interrupted_sent[target] = time.time()
                    comfy.post("/interrupt", {"prompt_id": target})

        submitted: list[tuple[str, str, Graph | None, int, dict | None]] = []
        cancel_thread = threading.Thread(target=canceller, name="canceller", daemon=True)
        cancel_thread.start()
        for i, kind in enumerate(plan, start=1):
            if kind in BAD:
                g = BAD[kind][0](i)
            elif kind in ("interrupt", "delete"):
                g = valid(i, "scratch" if kind == "delete" else "detect")
            else:
                g = valid(i, kind)
            status, answer = comfy.request("/prompt", {"prompt": g.nodes,
                                                       "client_id": CLIENT_ID})
            if kind in BAD and BAD[kind][1] == "validation":
                assert status == 400, f"{kind}: expected a 400, got {status}: {answer}"
                submitted.append((kind, "", g, i, answer))
                continue
            assert status == 200, f"{kind}: /prompt refused: {json.dumps(answer)[:2000]}"
            pid = answer["prompt_id"]
            if kind == "interrupt":
                with lock:
                    to_interrupt.add(pid)
            submitted.append((kind, pid, g, i, None))
        # pending deletions
        deleted = [pid for kind, pid, *_ in submitted if kind == "delete"]
        assert comfy.post("/queue", {"delete": deleted}) == 200

        # 3. wait for every prompt that was not deleted
        deadline = time.monotonic() + QUEUE_TIMEOUT
        results: dict[str, dict] = {}
        for kind, pid, _, _, _ in submitted:
            if pid and kind != "delete":
                results[pid] = comfy.wait(pid, timeout=max(1.0, deadline - time.monotonic()))
        stop_canceller.set()
        cancel_thread.join(timeout=5)
        rss_end = _settled_rss(comfy)
    finally:
        poller.stop()
        events.close()
    wall = time.monotonic() - t_start

    # 4. every prompt ended as it should
    counts: dict[str, int] = {}
    interrupt_latencies: dict[str, float] = {}  # node it stopped in -> worst latency
    for kind, pid, g, _, answer in submitted:
        counts[kind] = counts.get(kind, 0) + 1
        if kind in BAD:
            _, where, node_class, _ = BAD[kind]
            if where == "validation":
                errors = answer["node_errors"]
                assert errors, f"{kind}: a 400 without node errors: {answer}"
                if node_class is not None:
                    nid = g.find(node_class)
                    assert nid in errors, f"{kind}: no error on {node_class}: {errors}"
                _check_error_text(kind, json.dumps(errors))
            else:
                entry = results[pid]
                assert entry["status"]["status_str"] == "error", f"{kind}: {entry['status']}"
                err = _message(entry, "execution_error")
                assert err is not None, f"{kind}: no execution_error: {entry['status']}"
                assert err["node_type"] == node_class, (kind, err["node_type"])
                assert err["exception_type"].startswith("oldphoto_core.errors."), \
                    f"{kind}: a raw {err['exception_type']}: {err['exception_message']}"
                _check_error_text(kind, err["exception_message"])
        elif kind == "interrupt":
            entry = results[pid]
            msg = _message(entry, "execution_interrupted")
            assert msg is not None, f"{pid} was not interrupted: {entry['status']}"
            late = msg["timestamp"] / 1000 - interrupted_sent[pid]
            where = msg["node_type"]
            interrupt_latencies[where] = round(max(late, interrupt_latencies.get(where, 0)), 3)
        elif kind == "delete":
            status, hist = comfy.request(f"/history/{pid}")
            assert pid not in hist, f"deleted prompt {pid} ran"
        else:
            _check_valid(comfy, pid, g, results[pid])
    assert counts == MIX

    # 5. the server answered throughout, and kept its memory
    assert comfy.proc.poll() is None and comfy.alive()
    assert not poller.failures, f"/system_stats did not answer: {poller.failures[:5]}"
    latencies = sorted(poller.latencies)
    figures = {
        "prompts": N_PROMPTS,
        "mix": {"warmup": 1, **MIX},
        "soak_wall_s": round(wall, 1),
        "rss_after_first_valid_mib": _mib(rss_first),
        "rss_end_mib": _mib(rss_end),
        "rss_ratio": round(rss_end / rss_first, 4),
        "rss_peak_mib": _mib(comfy.peak_rss()),
        "rss_max_sampled_mib": _mib(max(poller.rss, default=0)),
        "system_stats_polls": len(latencies),
        "system_stats_max_s": round(latencies[-1], 3),
        "system_stats_p95_s": round(latencies[int(0.95 * (len(latencies) - 1))], 3),
        "system_stats_failures": len(poller.failures),
        # interrupts sent as each target started; they take effect at the next check: between
        # nodes, between images, or per query chunk of the scratch attention
        "interrupt_latency_max_s_by_node": interrupt_latencies,
    }
    _publish(figures_path, soak=figures)
    assert rss_end <= RSS_GROWTH * rss_first, \
        f"RSS grew from {_mib(rss_first)} MiB to {_mib(rss_end)} MiB over the queue"


# -- cancel latency -----------------------------------------------------------------------------

def test_cancel_during_the_scratch_attention_stops_within_a_second(soak_server, figures_path):
    comfy = soak_server
    g = Graph()
    photo = g.add("LoadImage", image="old_photo.png")
    big = g.add("ImageScale", image=photo, upscale_method="bilinear", width=CANCEL_SIZE,
                height=CANCEL_SIZE, crop="disabled")
    scratch_graph(g, big, stripe_mask(g, CANCEL_SIZE, CANCEL_SIZE), "soak/cancelled")
    map_id = g.find("OldPhotoLatentMap")
    events = Events(comfy.url, CLIENT_ID)
    try:
        t_submit = time.monotonic()
        pid = comfy.submit(g.nodes, CLIENT_ID)
        # the Latent Map node reports progress from inside the attention (per query chunk)
        _, t_in, _, _ = events.wait_for(
            lambda typ, d: typ == "progress" and d.get("node") == map_id
            and d.get("prompt_id") == pid, timeout=RUN_TIMEOUT)
        time.sleep(0.2)  # well inside the first chunk
        t_post = time.monotonic()
        assert comfy.post("/interrupt", {"prompt_id": pid}) == 200
        _, t_end, typ, data = events.wait_for(
            lambda typ, d: d.get("prompt_id") == pid and typ in (
                "execution_interrupted", "execution_error", "execution_success"),
            timeout=RUN_TIMEOUT)
        progress = [t for t, typ, d in events.messages
                    if typ == "progress" and d.get("node") == map_id and d.get("prompt_id") == pid]
    finally:
        events.close()
    assert typ == "execution_interrupted", f"the run was not interrupted: {typ} {data}"
    assert data["node_id"] == map_id, f"interrupted in {data['node_type']}, not the mapping"
    latency = t_end - t_post
    entry = comfy.wait(pid)
    assert _message(entry, "execution_interrupted") is not None
    figures = {
        "image": f"{CANCEL_SIZE}x{CANCEL_SIZE}",
        "attention_entered_after_s": round(t_in - t_submit, 3),
        "attention_progress_messages": len(progress),
        "interrupt_posted_after_attention_start_s": round(t_post - t_in, 3),
        "cancel_latency_s": round(latency, 3),
    }
    # the server goes on: a small valid run right after
    after = valid(997, "scratch")
    pid2 = comfy.submit(after.nodes, CLIENT_ID)
    _check_valid(comfy, pid2, after, comfy.wait(pid2))
    figures["rss_after_cancel_mib"] = _mib(comfy.rss())
    _publish(figures_path, cancel=figures)
    assert latency < CANCEL_LATENCY, \
        f"Cancel took {latency:.2f} s to stop the scratch attention (limit {CANCEL_LATENCY} s)"

