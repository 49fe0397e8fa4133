"""The pack as ComfyUI sees it: ids, types, categories, tooltips, defaults, one ComfyUI module."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest
from oldphoto_pack.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

REPO = Path(__file__).resolve().parents[2]
EIGHT = ["OldPhotoDegrade", "OldPhotoDetectScratches", "OldPhotoVAEEncodeOld", "OldPhotoLatentMap",
         "OldPhotoVAEDecodeClean", "OldPhotoFaceDetect", "OldPhotoFaceEnhance", "OldPhotoBlend"]
LOADERS = {"OldPhotoScratchModelLoader": "OLDPHOTO_SCRATCH_MODEL",
           "OldPhotoVAELoader": "OLDPHOTO_VAE", "OldPhotoMappingLoader": "OLDPHOTO_MAPPING",
           "OldPhotoFaceModelLoader": "OLDPHOTO_FACE_MODEL",
           "OldPhotoFaceDetectorLoader": "OLDPHOTO_FACE_DETECTOR"}
#: beyond the design's eight: the face crops out to any restorer (issue 14)
EXTRA = {"OldPhotoFacesToImages"}
WIDGETS = {"INT", "FLOAT", "STRING", "BOOLEAN"}
ALL = sorted(NODE_CLASS_MAPPINGS)


def _inputs(cls):
    spec = cls.INPUT_TYPES()
    assert set(spec) <= {"required", "optional", "hidden"}
    for section in ("required", "optional"):
        for name, entry in spec.get(section, {}).items():
            yield section, name, entry[0], (entry[1] if len(entry) > 1 else {})


def test_every_node_of_the_design_is_registered():
    assert set(EIGHT) | set(LOADERS) | EXTRA | {"OldPhotoRestore"} == set(NODE_CLASS_MAPPINGS)
    assert set(NODE_DISPLAY_NAME_MAPPINGS) == set(NODE_CLASS_MAPPINGS)
    assert len(set(NODE_DISPLAY_NAME_MAPPINGS.values())) == len(NODE_DISPLAY_NAME_MAPPINGS)
    for node_id, out_type in LOADERS.items():
        assert NODE_CLASS_MAPPINGS[node_id].RETURN_TYPES == (out_type,)


@pytest.mark.parametrize("node_id", ALL)
def test_declaration(node_id):
    cls = NODE_CLASS_MAPPINGS[node_id]
    expected = "loaders/old photo" if node_id.endswith("Loader") else "image/restoration/old photo"
    assert cls.CATEGORY.startswith(expected)
    assert callable(getattr(cls, cls.FUNCTION))
    assert isinstance(cls.DESCRIPTION, str) and cls.DESCRIPTION
    n = len(cls.RETURN_TYPES)
    assert len(cls.RETURN_NAMES) == n and len(cls.OUTPUT_TOOLTIPS) == n
    assert all(isinstance(t, str) and t for t in cls.OUTPUT_TOOLTIPS)
    for _, name, typ, opts in _inputs(cls):
        assert opts.get("tooltip"), f"{node_id}.{name} has no tooltip"
        if isinstance(typ, (list, tuple)):
            if "default" in opts:
                assert opts["default"] in typ, f"{node_id}.{name}"
        elif typ in ("INT", "FLOAT"):
            assert opts["min"] <= opts["default"] <= opts["max"], f"{node_id}.{name}"
        elif typ == "BOOLEAN":
            assert isinstance(opts["default"], bool)


def test_randomness_has_a_seed_widget():
    seeds = [(node_id, name) for node_id in ALL for _, name, typ, opts
             in _inputs(NODE_CLASS_MAPPINGS[node_id]) if opts.get("control_after_generate")]
    assert seeds == [("OldPhotoDegrade", "seed")]


def test_validate_inputs_are_classmethods():
    for node_id in ALL:
        fn = getattr(NODE_CLASS_MAPPINGS[node_id], "VALIDATE_INPUTS", None)
        if fn is not None:  # ComfyUI calls it on the class
            assert getattr(fn, "__self__", None) is NODE_CLASS_MAPPINGS[node_id]


def test_entry_point_imports_like_comfyui(tmp_path):
    """ComfyUI loads ``custom_nodes/<folder>/__init__.py`` under the folder's path as name."""
    name = str(tmp_path / "custom_nodes" / "oldphoto").replace(".", "_x_")
    spec = importlib.util.spec_from_file_location(name, REPO / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        assert set(module.NODE_CLASS_MAPPINGS) == set(NODE_CLASS_MAPPINGS)
        assert module.NODE_DISPLAY_NAME_MAPPINGS == NODE_DISPLAY_NAME_MAPPINGS
        assert "nodes" not in sys.modules or not hasattr(sys.modules["nodes"], "comfy_compat")
    finally:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_only_comfy_compat_touches_comfyui():
    touching = sorted(p.name for p in (REPO / "nodes").glob("*.py")
                      if _imports(p) & {"comfy", "folder_paths", "comfy_extras", "server"})
    assert touching == ["comfy_compat.py"]
    core = [p for p in (REPO / "oldphoto_core").rglob("*.py")
            if _imports(p) & {"comfy", "folder_paths", "nodes"}]
    assert core == []
