"""The shipped workflows: node types exist, links are typed, widget values are valid, and each
API twin (``example_workflows/api/*.api.json``) is the translation of its UI graph."""

from __future__ import annotations

import inspect
import itertools
import json
from pathlib import Path

import pytest
from oldphoto_pack.nodes import NODE_CLASS_MAPPINGS, detector_loader

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / "example_workflows").glob("*.json"))
API_DIR = REPO / "example_workflows" / "api"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}
SEED_CONTROLS = {"fixed", "increment", "decrement", "randomize"}

# The ComfyUI core nodes our workflows use, as ComfyUI declares them (nodes.py,
# comfy_extras/nodes_mask.py, nodes_preview_any.py, nodes_post_processing.py); the e2e test
# checks them against a real ComfyUI's /object_info.
CORE_NODES = {
    "LoadImage": {"input": {"required": {"image": ([], {"image_upload": True})}},
                  "output": ["IMAGE", "MASK"]},
    "SaveImage": {"input": {"required": {"images": ("IMAGE", {}),
                                         "filename_prefix": ("STRING", {"default": "ComfyUI"})}},
                  "output": []},
    "PreviewImage": {"input": {"required": {"images": ("IMAGE", {})}}, "output": []},
    "MaskToImage": {"input": {"required": {"mask": ("MASK", {})}}, "output": ["IMAGE"]},
    "PreviewAny": {"input": {"required": {"source": ("*", {})}}, "output": []},
    "ImageBlur": {"input": {"required": {
        "image": ("IMAGE", {}),
        "blur_radius": ("INT", {"default": 1, "min": 1, "max": 31, "step": 1}),
        "sigma": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1})}},
        "output": ["IMAGE"]},
}
# Nodes of the frontend only (a comment on the canvas): never part of an API prompt.
VIRTUAL_NODES = {
    "Note": {"input": {"required": {"text": ("STRING", {"multiline": True})}}, "output": []},
}


def node_spec(node_type: str) -> tuple[list[tuple[str, object, dict, bool]], list[str]]:
    """``([(name, type, options, required)], output types)`` of a node type."""
    if node_type in NODE_CLASS_MAPPINGS:
        cls = NODE_CLASS_MAPPINGS[node_type]
        spec, outputs = cls.INPUT_TYPES(), list(cls.RETURN_TYPES)
    else:
        known = CORE_NODES.get(node_type) or VIRTUAL_NODES[node_type]
        spec, outputs = known["input"], known["output"]
    inputs = []
    for section in ("required", "optional"):
        for name, entry in spec.get(section, {}).items():
            opts = entry[1] if len(entry) > 1 else {}
            inputs.append((name, entry[0], opts, section == "required"))
    return inputs, outputs


def is_widget(typ: object) -> bool:
    return isinstance(typ, (list, tuple)) or typ in WIDGET_TYPES


def widget_values(node: dict, *, saved_earlier: bool = False) -> dict:
    """Map a UI node's ``widgets_values`` onto its widget inputs (skipping the frontend's extra
    values: the seed control and the image upload button).

    ``saved_earlier``: as the editor loads a workflow saved by an earlier version of the node,
    which assigns the values by position, ignores values beyond the node's widgets and leaves
    the widgets beyond the saved values at their defaults (a missing value of a widget without
    a default is still an error: that widget would have no value).
    """
    inputs, _ = node_spec(node["type"])
    values = list(node.get("widgets_values", []))
    out = {}
    for name, typ, opts, _ in inputs:
        if not is_widget(typ):
            continue
        if not values and saved_earlier and "default" in opts:
            out[name] = opts["default"]
            continue
        assert values, f"{node['type']}#{node['id']}: no value for widget {name}"
        out[name] = values.pop(0)
        if opts.get("control_after_generate"):
            assert values.pop(0) in SEED_CONTROLS
        if opts.get("image_upload"):
            assert values.pop(0) == "image"
    assert saved_earlier or not values, f"{node['type']}#{node['id']}: extra widget values " \
                                        f"{values}"
    return out


def to_api(ui: dict, *, saved_earlier: bool = False) -> dict:
    """The API prompt ComfyUI's "Export (API)" makes of a UI workflow (``saved_earlier``: see
    :func:`widget_values`)."""
    links = {row[0]: row for row in ui["links"]}
    api = {}
    for node in ui["nodes"]:
        if node.get("mode", 0) != 0 or node["type"] in VIRTUAL_NODES:
            continue
        inputs = {}
        linked = {i["name"]: i["link"] for i in node.get("inputs", []) if i.get("link")}
        wv = widget_values(node, saved_earlier=saved_earlier)
        for name, _, _, _ in node_spec(node["type"])[0]:
            if name in linked:
                row = links[linked[name]]
                inputs[name] = [str(row[1]), row[2]]
            elif name in wv:
                inputs[name] = wv[name]
        api[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return api


def test_every_workflow_has_an_api_twin():
    names = {p.stem for p in WORKFLOWS}
    assert {"oldphoto_full_restoration", "oldphoto_scratch_restoration",
            "oldphoto_quality_restoration", "oldphoto_all_in_one",
            "oldphoto_make_training_pairs", "oldphoto_face_interop"} <= names
    assert {p.name.removesuffix(".api.json") for p in API_DIR.glob("*.api.json")} == names


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_ui_workflow(path, use_models, monkeypatch):
    # whether a face detector package is installed here is not a property of the workflow
    monkeypatch.setattr(detector_loader, "_backend_problem", lambda backend, pack: None)
    ui = json.loads(path.read_text())
    for key in ("last_node_id", "last_link_id", "nodes", "links", "version"):
        assert key in ui
    nodes = {n["id"]: n for n in ui["nodes"]}
    assert len(nodes) == len(ui["nodes"]) and ui["last_node_id"] >= max(nodes)
    link_ids = [row[0] for row in ui["links"]]
    assert len(set(link_ids)) == len(link_ids) and ui["last_link_id"] >= max(link_ids)
    assert any(n["type"] in NODE_CLASS_MAPPINGS for n in nodes.values())

    for node in nodes.values():
        assert node["type"] in NODE_CLASS_MAPPINGS or node["type"] in CORE_NODES \
            or node["type"] in VIRTUAL_NODES, node["type"]
        inputs, outputs = node_spec(node["type"])
        sockets = [(name, typ, req) for name, typ, _, req in inputs if not is_widget(typ)]
        assert [i["name"] for i in node.get("inputs", [])] == [s[0] for s in sockets]
        for slot, (name, typ, required) in zip(node.get("inputs", []), sockets, strict=True):
            assert slot["type"] == typ
            assert slot["link"] is not None or not required, f"{node['type']}.{name} unlinked"
        assert [o["type"] for o in node.get("outputs", [])] == outputs

        # widget values are valid for their inputs
        values = widget_values(node)
        for name, typ, opts, _ in inputs:
            if name not in values:
                continue
            v = values[name]
            if isinstance(typ, (list, tuple)):
                if node["type"] == "LoadImage":
                    assert isinstance(v, str) and v.endswith(".png")
                else:
                    assert v in typ, f"{node['type']}.{name}: {v!r} not in {typ}"
            elif typ == "INT":
                assert isinstance(v, int) and opts["min"] <= v <= opts["max"]
            elif typ == "FLOAT":
                assert isinstance(v, (int, float)) and opts["min"] <= v <= opts["max"]
            elif typ == "BOOLEAN":
                assert isinstance(v, bool)
            else:
                assert isinstance(v, str)
        cls = NODE_CLASS_MAPPINGS.get(node["type"])
        check = getattr(cls, "VALIDATE_INPUTS", None)
        if check is not None:
            wanted = inspect.signature(check).parameters
            assert check(**{k: v for k, v in values.items() if k in wanted}) is True

    for link_id, src, src_slot, dst, dst_slot, typ in ui["links"]:
        out = nodes[src]["outputs"][src_slot]
        assert out["type"] == typ and link_id in out["links"]
        slot = nodes[dst]["inputs"][dst_slot]
        assert slot["link"] == link_id
        assert slot["type"] in (typ, "*"), f"link {link_id}: {typ} into {slot['type']}"
        declared = node_spec(nodes[dst]["type"])[0]
        declared = {name: t for name, t, _, _ in declared}[slot["name"]]
        assert declared in (typ, "*")


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_api_twin_is_the_translation(path):
    ui = json.loads(path.read_text())
    api = json.loads((API_DIR / f"{path.stem}.api.json").read_text())
    stripped = {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()}
    assert stripped == to_api(ui)
    for node in ui["nodes"]:  # the editor exports a node's title as _meta.title
        if "title" in node and str(node["id"]) in api:
            assert api[str(node["id"])]["_meta"]["title"] == node["title"]


# --- layout: what a person sees at "Fit view" in a 1920x1080 window (ComfyUI frontend 1.27) ---
STAGES = ["Load", "Degrade", "Detect", "Restore", "Faces", "Save"]  # left to right
NODE_TITLE_HEIGHT = 30  # LiteGraph: the title bar is drawn above a node's pos
GROUP_TITLE_HEIGHT = 34  # a group's title bar: 1.4 x its 24 px font
# the editor's canvas in a 1920x1080 window (its side bar and top bars take the rest); "Fit
# view" frames all nodes and groups, 10 px around, at 0.75 of the canvas
CANVAS, FIT_PADDING, FIT_ZOOM = (1856, 1002), 10, 0.75
MIN_SCALE = 0.6  # below 8/14 = 0.57 the editor draws nodes without text; 0.6 keeps 8.4 px type
OUTPUT_NODES = {"SaveImage": "Save Image", "PreviewImage": "Preview Image",
                "PreviewAny": "Preview Any"}  # type: the default title
# Arial's advance widths (1/1000 em, ASCII 32..126): the editor draws widgets in 12 px Arial
ARIAL = [278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278,
         556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556,
         1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778,
         667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556,
         333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556,
         556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584]


def text_width(text: str, px: float = 12) -> float:
    return sum(ARIAL[ord(c) - 32] if 32 <= ord(c) < 127 else 1000 for c in text) * px / 1000


def box(node: dict) -> tuple[float, float, float, float]:
    """``(left, top, right, bottom)`` of a node as drawn, its title bar included."""
    (x, y), (w, h) = node["pos"], node["size"]
    return x, y - NODE_TITLE_HEIGHT, x + w, y + h


def group_box(group: dict) -> tuple[float, float, float, float]:
    x, y, w, h = group["bounding"]
    return x, y, x + w, y + h


def overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def inside(a, b) -> bool:
    return b[0] <= a[0] and a[2] <= b[2] and b[1] <= a[1] and a[3] <= b[3]


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_ui_workflow_reads_at_fit_view(path):
    """Columns by stage in titled groups, nothing overlapping, one Note that says where the
    models go, titled outputs, whole model file names, and the whole graph legible at the
    editor's "Fit view" (``tests/e2e/frontend_layout.py`` checks the same in the real editor;
    ``benchmarks/layout_workflows.py`` makes the layout)."""
    ui = json.loads(path.read_text())
    nodes, groups = ui["nodes"], ui["groups"]
    for i, a in enumerate(nodes):
        for b in nodes[i + 1:]:
            assert not overlap(box(a), box(b)), f"{a['id']} overlaps {b['id']}"

    titles = [g["title"] for g in groups]
    assert titles and set(titles) <= set(STAGES) and len(set(titles)) == len(titles), titles
    ordered = sorted(groups, key=lambda g: g["bounding"][0])
    assert [g["title"] for g in ordered] == sorted(titles, key=STAGES.index)
    for g, h in itertools.pairwise(ordered):
        assert group_box(g)[2] <= group_box(h)[0], f"groups {g['title']} and {h['title']}"
    for node in nodes:
        if node["type"] == "Note":
            assert not any(overlap(box(node), group_box(g)) for g in groups)
            continue
        holders = [g["title"] for g in groups if inside(box(node), group_box(g))]
        assert len(holders) == 1, f"{node['type']}#{node['id']} in groups {holders}"
        g = next(g for g in groups if g["title"] == holders[0])
        assert box(node)[1] >= g["bounding"][1] + GROUP_TITLE_HEIGHT, "under the group's title"

    notes = [n for n in nodes if n["type"] == "Note"]
    assert len(notes) == 1, f"{len(notes)} Notes"
    text = notes[0]["widgets_values"][0]
    types = {n["type"] for n in nodes}
    if types & {"OldPhotoScratchModelLoader", "OldPhotoVAELoader", "OldPhotoMappingLoader",
                "OldPhotoFaceModelLoader", "OldPhotoRestore"}:
        assert "ComfyUI/models/oldphoto/" in text, "the Note says where the checkpoints go"
    if types & {"OldPhotoFaceDetectorLoader", "OldPhotoRestore"}:
        assert "ComfyUI/models/insightface/" in text, "the Note says where det_10g.onnx goes"
    for node in nodes:
        if node["type"] in OUTPUT_NODES:
            assert node.get("title") not in (None, "", OUTPUT_NODES[node["type"]]), node["id"]
            if node["type"] == "SaveImage":
                assert node["title"].startswith("Save ")

    # combo and text widgets show their label and whole value (BaseWidget.drawTruncatingText:
    # 15 px margins, and a combo's arrows)
    for node in nodes:
        if node["type"] in VIRTUAL_NODES:
            continue
        values = widget_values(node)
        for name, typ, opts, _ in node_spec(node["type"])[0]:
            if not isinstance(values.get(name), str) or opts.get("multiline"):
                continue
            room = node["size"][0] - 60 - (25 if isinstance(typ, (list, tuple)) else 0)
            need = text_width(name) + 5 + text_width(values[name])
            assert need <= room, f"{node['type']}#{node['id']}.{name}: {values[name]!r} cut"

    boxes = [box(n) for n in nodes] + [group_box(g) for g in groups]
    width = max(b[2] for b in boxes) - min(b[0] for b in boxes) + 2 * FIT_PADDING
    height = max(b[3] for b in boxes) - min(b[1] for b in boxes) + 2 * FIT_PADDING
    scale = FIT_ZOOM * min(CANVAS[0] / width, CANVAS[1] / height)
    assert scale >= MIN_SCALE, f"fit view at {scale:.2f}"


def test_the_template_browser_serves_this_folder():
    """ComfyUI serves the first of these folders that exists (app/custom_node_manager.py), and
    lists the ``*.json`` directly inside each: ours must come first, the API twins not at all."""
    order = ["example_workflows", "example", "examples", "workflow", "workflows"]
    first = next(name for name in order if (REPO / name).is_dir())
    assert first == "example_workflows"
    assert not list((REPO / "example_workflows").glob("*.api.json"))


def test_ui_workflows_saved_with_face_size_on_detect_faces_still_load():
    """Before the crop size moved to the nodes that consume faces, 'Detect Faces' had a
    face_size widget (saved as ``["256"]``) and 'Blend Faces' no restored_faces input; before
    that, the nodes that run networks had no precision widget. The editor assigns saved widget
    values by position, ignoring those beyond the node's widgets and leaving missing ones at
    their defaults, and matches saved inputs to the node's by name, adding new ones (frontend
    1.27: ``LGraphNode.configure``, ``ComfyNode.configure``): such a workflow exports the same
    prompt as the shipped one, and ComfyUI would drop a stale face_size of an API prompt
    anyway (and an API prompt without precision runs at its default, exact)."""
    path = REPO / "example_workflows" / "oldphoto_full_restoration.json"
    ui = json.loads(path.read_text())
    detect = next(n for n in ui["nodes"] if n["type"] == "OldPhotoFaceDetect")
    blend = next(n for n in ui["nodes"] if n["type"] == "OldPhotoBlend")
    assert detect["widgets_values"] == []
    detect["widgets_values"] = ["256"]
    blend["inputs"] = [i for i in blend["inputs"] if i["name"] != "restored_faces"]
    for node in ui["nodes"]:
        if "precision" in {name for name, *_ in node_spec(node["type"])[0]}:
            assert node["widgets_values"][-1] == "exact"
            node["widgets_values"].pop()
    with pytest.raises(AssertionError, match="extra widget values|no value for widget"):
        to_api(ui)  # what the shipped workflows must not have
    api = json.loads((API_DIR / "oldphoto_full_restoration.api.json").read_text())
    twin = {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()}
    assert to_api(ui, saved_earlier=True) == twin
