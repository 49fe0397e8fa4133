"""Load UI workflows into ComfyUI's frontend in headless Chromium; export them as API prompts.

Run by the e2e test with ComfyUI's interpreter (it needs aiohttp, a ComfyUI requirement)::

    python frontend_check.py CHROMIUM URL WORKFLOW.json [WORKFLOW.json ...]

Prints one JSON object: per workflow file name, the node count the editor built, the node types
it does not know, and the prompt the frontend exports (``app.graphToPrompt().output``). Talks to
Chromium over the DevTools protocol on a free local port; nothing leaves the machine.
:func:`frontend` (the browser with the editor open) is shared with ``frontend_layout.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

LOAD = """(async () => {
  const wf = %s;
  await app.loadGraphData(wf);
  const nodes = app.graph._nodes;
  const unknown = nodes.filter(n => !LiteGraph.registered_node_types[n.type]).map(n => n.type);
  const p = await app.graphToPrompt();
  return JSON.stringify({nodes: nodes.length, unknown, output: p.output});
})()"""
READY = ("!!(window.app && window.app.graph && window.LiteGraph && "
         "Object.keys(LiteGraph.registered_node_types).length > 50)")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Page:
    """One Chromium tab over the DevTools protocol: ``call`` a method, ``evaluate`` JavaScript
    (promises awaited, the value returned as JSON)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws, self._ids = ws, itertools.count(1)

    async def call(self, method: str, **params) -> dict:
        i = next(self._ids)
        await self._ws.send_json({"id": i, "method": method, "params": params})
        while True:
            msg = await self._ws.receive_json()
            if msg.get("id") == i:
                if "error" in msg:
                    raise RuntimeError(msg["error"])
                return msg["result"]

    async def evaluate(self, expr: str):
        r = await self.call("Runtime.evaluate", expression=expr, awaitPromise=True,
                            returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(json.dumps(r["exceptionDetails"])[:3000])
        return r["result"].get("value")


@contextlib.asynccontextmanager
async def frontend(chromium: str, url: str, *, width: int = 1280,
                   height: int = 800) -> AsyncIterator[Page]:
    """Headless Chromium with ComfyUI's editor at ``url`` open in a ``width`` x ``height``
    window (device pixel ratio 1), ready (its node types registered)."""
    port = _port()
    # chromium's helper processes may still write to the profile as it goes: ignore that
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen(
            [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
             "--remote-debugging-address=127.0.0.1", f"--window-size={width},{height}",
             "--force-device-scale-factor=1", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            async with aiohttp.ClientSession() as session:
                pages = None
                for _ in range(100):
                    try:
                        async with session.get(f"http://127.0.0.1:{port}/json") as r:
                            pages = await r.json()
                            break
                    except aiohttp.ClientError:
                        await asyncio.sleep(0.2)
                if pages is None:
                    raise SystemExit("chromium did not open its DevTools port")
                info = next(p for p in pages if p["type"] == "page")
                ws = await session.ws_connect(info["webSocketDebuggerUrl"], max_msg_size=0)
                page = Page(ws)
                await page.call("Emulation.setDeviceMetricsOverride", width=width,
                                height=height, deviceScaleFactor=1, mobile=False)
                await page.call("Page.navigate", url=url)
                for _ in range(240):
                    try:
                        if await page.evaluate(READY):
                            break
                    except RuntimeError:
                        pass
                    await asyncio.sleep(0.5)
                else:
                    raise SystemExit("the ComfyUI frontend did not start")
                yield page
        finally:  # end chromium and its helpers (their own process group), nothing else
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            except ProcessLookupError:
                pass


async def run(chromium: str, url: str, files: list[Path]) -> dict:
    async with frontend(chromium, url) as page:
        return {path.name: json.loads(await page.evaluate(LOAD % path.read_text()))
                for path in files}


if __name__ == "__main__":
    chromium_bin, base_url, *names = sys.argv[1:]
    print(json.dumps(asyncio.run(run(chromium_bin, base_url, [Path(n) for n in names]))))
