"""Lay out the shipped UI workflows: one group per stage, left to right, nodes in columns.

    python benchmarks/layout_workflows.py           # rewrite example_workflows/*.json
    python benchmarks/layout_workflows.py --check   # exit 1 where a file differs from its plan

Each workflow's plan (``PLANS``) lists its stages left to right. A stage becomes a titled group
holding one or more columns; a column is a list of node ids stacked top to bottom. Node sizes
come from ``HEIGHT`` (ComfyUI frontend 1.27's ``computeSize()`` of each node type, with room for
the image an image node shows after a run) and from the column's width: ``WIDE`` where a model
loader shows a file name (the longest published name fits, label included), else ``NARROW``.
The Note, one per workflow, goes under the stages it names. Nothing else changes: node ids,
links, widget values and the API twins' inputs stay as they are; the twins' ``_meta`` titles
follow the titles given here, as the editor's "Export (API)" would write them.

The result fits a 1920x1080 window at "Fit view" with every node's text drawn (checked without a
browser by ``tests/nodes/test_nodes_workflows.py``, in the real frontend by
``tests/e2e/frontend_layout.py``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / "example_workflows"

TITLE_H = 30      # LiteGraph.NODE_TITLE_HEIGHT: the title bar is drawn above a node's pos
GROUP_TITLE = 40  # a group's title bar (24 px font) and a little air
PAD = 15          # group border to its nodes
GAP_X = 40        # between the columns of one group
GAP_Y = 24        # between a node and the title bar of the next one (room for its badge)
GROUP_GAP = 30    # between two groups
NARROW, WIDE = 300, 580

HEIGHT = {
    "LoadImage": 326, "SaveImage": 290, "PreviewImage": 260, "PreviewAny": 88,
    "MaskToImage": 26, "ImageBlur": 82,
    "OldPhotoScratchModelLoader": 58, "OldPhotoVAELoader": 58, "OldPhotoMappingLoader": 58,
    "OldPhotoFaceDetectorLoader": 106, "OldPhotoFaceModelLoader": 82,
    "OldPhotoDetectScratches": 126, "OldPhotoVAEEncodeOld": 122, "OldPhotoLatentMap": 122,
    "OldPhotoVAEDecodeClean": 126, "OldPhotoFaceDetect": 46, "OldPhotoFaceEnhance": 78,
    "OldPhotoFacesToImages": 78, "OldPhotoBlend": 66, "OldPhotoRestore": 338,
    "OldPhotoDegrade": 512,
}
WIDE_TYPES = {"OldPhotoScratchModelLoader", "OldPhotoVAELoader", "OldPhotoMappingLoader",
              "OldPhotoFaceModelLoader"}
STAGE_COLOR = {"Load": "#3f789e", "Detect": "#b58b2a", "Restore": "#8A8", "Faces": "#a1309b",
               "Degrade": "#b06634", "Save": "#88A"}
NOTE_COLOR, NOTE_BGCOLOR = "#432", "#653"
NOTE_LINE_H, NOTE_CHAR_W = 13, 6.1  # the Note's textarea: 10 px monospace (editor default)

MODELS = ("Models: unzip the paper's checkpoints (Global/checkpoints.zip, "
          "Face_Enhancement/checkpoints.zip) into ComfyUI/models/oldphoto/; each loader lists "
          "the files it can load there.")
FACE_DETECTOR = ("Face detector: 'auto' takes insightface when "
                 "ComfyUI/models/insightface/models/buffalo_l/det_10g.onnx is there (pip install "
                 "insightface onnxruntime), else dlib (pip install dlib-bin "
                 "face-recognition-models).")


@dataclass(frozen=True)
class Skip:
    """Empty room in a column, e.g. to let a link pass above a node to the next column."""

    px: int


@dataclass
class Plan:
    stages: list[tuple[str, list[list[int | Skip]]]]
    titles: dict[int, str]
    note: str
    note_under: tuple[str, str]  # the first and the last stage the Note spans, below them
    note_title: str = "About this workflow"
    wide: set[int] = field(default_factory=set)  # more nodes to draw WIDE


PLANS = {
    "oldphoto_full_restoration": Plan(
        stages=[("Load", [[1, 2, 3, 4, 5, 10, 11]]), ("Detect", [[6]]),
                ("Restore", [[7, 8, 9]]), ("Faces", [[12, 13, 14]]), ("Save", [[15, 16, 17]])],
        titles={15: "Save restored photo", 17: "Save scratch mask"},
        note=("The whole restoration of 'Bringing Old Photos Back to Life', one node per step. "
              "Detect: the scratch detector marks the scratches. Restore: VAE_A encodes the "
              "photo, mapping_scratch restores its latent and fills the scratches, "
              "VAE_B_scratch decodes it. Faces: each face is found, enhanced by the face model "
              "and blended back. Save: the restored photo and the scratch mask, in "
              "ComfyUI/output/oldphoto/.\n\n"
              "Photo: old_photo.png in ComfyUI/input/ (pick another in Load Image).\n\n"
              f"{MODELS}\n\n{FACE_DETECTOR}"),
        note_under=("Detect", "Faces")),
    "oldphoto_scratch_restoration": Plan(
        stages=[("Load", [[1, 2, 3, 4, 5]]), ("Detect", [[6]]), ("Restore", [[7, 8, 9]]),
                ("Save", [[10, 11, 12]])],
        titles={10: "Save restored photo", 12: "Save scratch mask"},
        note=("Restores a scratched photo, without faces. Detect: the scratch detector marks "
              "the scratches. Restore: VAE_A encodes the photo, mapping_scratch restores its "
              "latent and fills the scratches, VAE_B_scratch decodes it. Save: the restored "
              "photo and the scratch mask, in ComfyUI/output/oldphoto/.\n\n"
              f"Photo: old_photo.png in ComfyUI/input/.\n\n{MODELS}"),
        note_under=("Detect", "Restore")),
    "oldphoto_quality_restoration": Plan(
        stages=[("Load", [[1, 2, 3, 4]]), ("Restore", [[5, 6, 7]]), ("Save", [[8]])],
        titles={8: "Save restored photo"},
        note=("Restores a faded, noisy or blurred photo without scratches (the paper's quality "
              "path). Restore: VAE_A encodes the photo, mapping_quality restores its latent, "
              "VAE_B_quality decodes it. Save: the restored photo, in "
              "ComfyUI/output/oldphoto/.\n\n"
              f"Photo: old_photo.png in ComfyUI/input/.\n\n{MODELS}"),
        note_under=("Restore", "Restore")),
    "oldphoto_all_in_one": Plan(
        stages=[("Load", [[1]]), ("Restore", [[2]]), ("Save", [[Skip(60), 4, 6], [3, 5]])],
        titles={3: "Save restored photo", 5: "Save scratch mask",
                6: "Show what ran (path, faces)"},
        note=("The whole restoration in one node: scratch detection when there are scratches "
              "(scratch 'auto'), global restoration, then faces. Save: the restored photo and "
              "the scratch mask, in ComfyUI/output/oldphoto/; the text shows which path ran "
              "and how many faces were enhanced.\n\n"
              "Photo: old_photo.png in ComfyUI/input/.\n\n"
              "Models: the node reads them from ComfyUI/models/oldphoto/ (models_folder): unzip "
              "the paper's checkpoints there, VAEs named VAE_A_quality / VAE_B_quality / "
              "VAE_B_scratch as published. With none there it runs its small bundled set.\n\n"
              f"{FACE_DETECTOR}"),
        note_under=("Load", "Restore")),
    "oldphoto_make_training_pairs": Plan(
        stages=[("Load", [[1]]), ("Degrade", [[2]]), ("Save", [[Skip(60), 5, 7, 3], [4, 6]])],
        titles={3: "Save clean photo", 4: "Save aged photo", 6: "Save defect mask",
                7: "Show drawn damage parameters"},
        note=("Makes training data: Old Photo Degrade ages a clean photo as the paper's recipe "
              "(noise, blur, JPEG, colour, scratches, dust, holes); the same seed gives the same "
              "damage. Save: the clean photo, the aged photo and the mask of the damage, in "
              "ComfyUI/output/oldphoto_pairs/; the text shows the drawn parameters.\n\n"
              "Photo: clean_photo.png in ComfyUI/input/. No model files are needed."),
        note_under=("Load", "Degrade")),
    "oldphoto_face_interop": Plan(
        stages=[("Load", [[1, 2]]), ("Faces", [[3, 4], [5, 6]]), ("Save", [[7, 8]])],
        titles={7: "Save photo with restored faces", 8: "Preview aligned face crops"},
        note=("Restores the faces of a photo with another pack's face restorer. Faces: Detect "
              "Faces finds them, Faces To Images cuts one aligned crop per face, the restorer "
              "restores the crops, Blend Faces puts them back. Save: the photo, in "
              "ComfyUI/output/oldphoto/.\n\n"
              "The restorer: put another pack's face restorer (CodeFormer, GFPGAN, GPEN, "
              "RestoreFormer ...) in place of 'Image Blur' (a stand-in). It must take an IMAGE "
              "batch of aligned face crops and return one restored crop per face, in order, at "
              "any size; if it finds and aligns faces itself, switch that off (its 'aligned' / "
              "'only center face' mode). Set the 'size' of Faces To Images to what it expects "
              "(512 for CodeFormer and GFPGAN). For the paper's own face model use Enhance Faces "
              "instead (see oldphoto_full_restoration).\n\n"
              f"Photo: old_photo.png in ComfyUI/input/.\n\n{FACE_DETECTOR}"),
        note_under=("Faces", "Faces")),
}


def note_height(text: str, width: int) -> int:
    per_line = int((width - 24) // NOTE_CHAR_W)
    lines = sum(max(1, -(-len(par) // per_line)) for par in text.split("\n"))
    return lines * NOTE_LINE_H + 30


def lay_out(ui: dict, plan: Plan) -> dict:
    """``ui`` with the plan's positions, sizes, titles, groups and Note."""
    nodes = {n["id"]: n for n in ui["nodes"]}
    placed = [i for _, cols in plan.stages for col in cols for i in col if isinstance(i, int)]
    notes = [i for i, n in nodes.items() if n["type"] == "Note"]
    assert sorted(placed + notes) == sorted(nodes), "every node but the Note in one column"
    groups, spans, x = [], {}, 0
    for stage, cols in plan.stages:
        left, bottom = x, 0
        x += PAD
        for col in cols:
            ids = [i for i in col if isinstance(i, int)]
            wide = any(nodes[i]["type"] in WIDE_TYPES or i in plan.wide for i in ids)
            width = WIDE if wide else NARROW
            y = GROUP_TITLE
            for i in col:
                if isinstance(i, Skip):
                    y += i.px
                    continue
                nodes[i]["pos"] = [x, y + TITLE_H]
                nodes[i]["size"] = [width, HEIGHT[nodes[i]["type"]]]
                y += TITLE_H + HEIGHT[nodes[i]["type"]] + GAP_Y
            bottom = max(bottom, y - GAP_Y + PAD)
            x += width + GAP_X
        x += PAD - GAP_X
        groups.append({"id": len(groups) + 1, "title": stage, "bounding": [left, 0, x - left,
                                                                           bottom],
                       "color": STAGE_COLOR[stage], "font_size": 24, "flags": {}})
        spans[stage] = (left, x, bottom)
        x += GROUP_GAP
    for i, title in plan.titles.items():
        nodes[i]["title"] = title

    first, last = plan.note_under
    left, right = spans[first][0], spans[last][1]
    top = max(b for lo, hi, b in spans.values() if hi > left and lo < right) + GROUP_GAP
    note = nodes[notes[0]] if notes else {
        "id": ui["last_node_id"] + 1, "type": "Note",
        "order": max(n.get("order", 0) for n in nodes.values()) + 1, "mode": 0, "flags": {},
        "inputs": [], "outputs": [], "properties": {}}
    note.update({"pos": [left, top + TITLE_H],
                 "size": [right - left, note_height(plan.note, right - left)],
                 "title": plan.note_title, "widgets_values": [plan.note], "color": NOTE_COLOR,
                 "bgcolor": NOTE_BGCOLOR})
    if not notes:
        ui["nodes"].append(note)
        ui["last_node_id"] = note["id"]
    ui["groups"] = groups
    return ui


def with_titles(api: dict, ui: dict) -> dict:
    """The API twin with the ``_meta`` titles the editor exports for ``ui``'s titled nodes."""
    for node in ui["nodes"]:
        if "title" in node and str(node["id"]) in api:
            api[str(node["id"])].setdefault("_meta", {})["title"] = node["title"]
    return api


def dump(data: dict) -> str:
    return json.dumps(data, indent=1) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, plan in PLANS.items():
        path, api_path = WORKFLOWS / f"{name}.json", WORKFLOWS / "api" / f"{name}.api.json"
        ui = lay_out(json.loads(path.read_text()), plan)
        api = with_titles(json.loads(api_path.read_text()), ui)
        for p, text in ((path, dump(ui)), (api_path, dump(api))):
            if p.read_text() != text:
                stale.append(p.relative_to(REPO))
                if not check:
                    p.write_text(text)
    verb = "differ from their plan" if check else "rewritten"
    print(f"{len(stale)} files {verb}" + "".join(f"\n  {p}" for p in stale))
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
