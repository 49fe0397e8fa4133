"""Screenshots of UI workflows in ComfyUI's frontend at "fit view", and their layout as drawn.

Run with ComfyUI's interpreter (it needs aiohttp, a ComfyUI requirement) against a running
ComfyUI, e.g. by ``test_e2e_comfyui.py``::

    python frontend_layout.py CHROMIUM URL OUT_DIR WORKFLOW.json [WORKFLOW.json ...]

Opens the editor in headless Chromium at 1920x1080 (device pixel ratio 1), and for each workflow:
loads it as the template browser does (``app.loadGraphData``), runs the editor's own "Fit view"
command (``Comfy.Canvas.FitView``, what the ``.`` key does), writes ``OUT_DIR/<name>.png``, and
reads back what the editor drew: the view's scale, whether it fell back to low-quality drawing
(no widget text), every node's and group's bounding box (the node's includes its title bar; in
graph units, and ``screen`` in window pixels, with ``text``: the part of the node holding its
title, slots and widgets), the widgets whose label and value do not fit (the value is cut with an
ellipsis) or whose text box must scroll, and the panels floating over the canvas (the minimap).
Prints one JSON object keyed by workflow file name.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from pathlib import Path

from frontend_check import frontend

WIDTH, HEIGHT = 1920, 1080

CLOSE_DIALOGS = """(() => {
  document.querySelectorAll(".p-dialog-close-button, .p-dialog-header-close")
    .forEach(b => b.click());
  document.querySelectorAll(".p-toast-message").forEach(t => t.remove());
  return true;
})()"""
LOAD = "(async () => { await app.loadGraphData(%s); return app.graph._nodes.length; })()"
FIT = """(async () => {
  await app.extensionManager.command.execute("Comfy.Canvas.FitView");
  return true;
})()"""
# the geometry of BaseWidget.drawTruncatingText: what a combo / text widget needs to show its
# label and its whole value, and the width it has at the node's size
READ = """((OVERLAYS) => {
  const c = app.canvas, ctx = c.ctx, box = c.canvas.getBoundingClientRect();
  const screen = r => [box.left + (r[0] + c.ds.offset[0]) * c.ds.scale,
                       box.top + (r[1] + c.ds.offset[1]) * c.ds.scale,
                       r[2] * c.ds.scale, r[3] * c.ds.scale];
  ctx.save();
  ctx.font = c.inner_text_font;
  const m = 15, gap = 5;
  const truncated = [];
  const nodes = app.graph._nodes.map(n => {
    for (const w of n.widgets ?? []) {
      if (typeof w.value !== "string" || !["combo", "text", "string"].includes(w.type)) continue;
      const pads = w.type === "combo" ? 5 + 20 : 0;
      const have = (w.width || n.size[0]) - 2 * m - pads - 2 * m;
      const need = ctx.measureText(w.label || w.name).width + gap + ctx.measureText(w.value).width;
      if (need > have) truncated.push({node: n.id, widget: w.name, value: w.value,
                                       need: Math.ceil(need), have: Math.floor(have)});
    }
    for (const w of n.widgets ?? []) {  // a text box (a Note's) that must scroll
      const el = w.element;
      if (el instanceof HTMLTextAreaElement && el.value && el.scrollHeight > el.clientHeight + 1)
        truncated.push({node: n.id, widget: w.name, value: el.value.slice(0, 40) + "...",
                        need: el.scrollHeight, have: el.clientHeight});
    }
    return {id: n.id, type: n.type, title: n.title, pos: Array.from(n.pos),
            size: Array.from(n.size), rect: Array.from(n.boundingRect),
            screen: screen(n.boundingRect),
            // the part with text (title bar, slots, widgets), not the room left for a preview
            text: screen([n.pos[0], n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT, n.size[0],
                          LiteGraph.NODE_TITLE_HEIGHT + n.computeSize()[1]])};
  });
  ctx.restore();
  const groups = app.graph._groups.map(g => ({title: g.title, rect: Array.from(g._bounding)}));
  const overlays = Array.from(document.querySelectorAll(OVERLAYS), e => {
    const b = e.getBoundingClientRect();
    return {name: e.className.split(" ")[0], rect: [b.left, b.top, b.width, b.height]};
  }).filter(o => o.rect[2] > 0 && o.rect[3] > 0);
  return JSON.stringify({
    scale: c.ds.scale, canvas: [box.left, box.top, box.width, box.height],
    low_quality: c.low_quality, nodes, groups, truncated, overlays});
})(".minimap-main-container")"""


async def run(chromium: str, url: str, out_dir: Path, files: list[Path]) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {}
    async with frontend(chromium, url, width=WIDTH, height=HEIGHT) as page:
        # a fresh user gets the template browser over the canvas: close it (and any toast)
        await asyncio.sleep(1.0)
        await page.evaluate(CLOSE_DIALOGS)
        for path in files:
            await page.evaluate(LOAD % path.read_text())
            await asyncio.sleep(1.5)  # the LoadImage preview arrives; the load's own fit ends
            await page.evaluate(FIT)
            await asyncio.sleep(1.0)  # the fit is animated (350 ms)
            result[path.name] = json.loads(await page.evaluate(READ))
            shot = await page.call("Page.captureScreenshot", format="png")
            (out_dir / f"{path.stem}.png").write_bytes(base64.b64decode(shot["data"]))
    return result


if __name__ == "__main__":
    chromium_bin, base_url, out, *names = sys.argv[1:]
    print(json.dumps(asyncio.run(run(chromium_bin, base_url, Path(out),
                                     [Path(n) for n in names]))))
