"""Faces fit together by construction (the crop size is the consumer's), and any face restorer
can sit between 'Detect Faces' and 'Blend Faces' (issue 14, items 1 and 2).

Graphs run as ComfyUI runs an API prompt (:func:`run_prompt`): links carry the upstream outputs,
only the inputs a node declares reach it, a missing required input is an error, and every node
runs under ``torch.inference_mode()``.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from oldphoto_pack.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, detector_loader
from oldphoto_pack.nodes.face_set import FaceSet
from oldphoto_pack.nodes.faces import (
    OldPhotoBlend,
    OldPhotoFaceDetect,
    OldPhotoFacesToImages,
)

from oldphoto_core.errors import InputError
from oldphoto_core.faces import (
    align_faces,
    blend_faces,
    blend_window,
    enhance_faces,
    restore_faces,
)
from oldphoto_core.models import ROLES

REPO = Path(__file__).resolve().parents[2]
API_DIR = REPO / "example_workflows" / "api"
DETECT, TO_IMAGES, BLEND = OldPhotoFaceDetect(), OldPhotoFacesToImages(), OldPhotoBlend()
H, W = 96, 80


@pytest.fixture
def photos():
    g = torch.Generator().manual_seed(5)
    return torch.rand(2, H, W, 3, generator=g) * 0.5 + 0.25


def nchw(image: torch.Tensor) -> torch.Tensor:
    return image.movedim(-1, 1).contiguous()


def nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.movedim(1, -1).contiguous()


def face_region(faces: FaceSet, above: float = 0.0) -> torch.Tensor:
    """``[B, H, W]`` bool: where some face's blend weight is above ``above``."""
    h, w = faces.size
    region = torch.zeros(faces.batch, h, w, dtype=torch.bool)
    for f in faces.flat:
        win = blend_window(f, h, w)
        rows, cols = win.slices
        region[f.image_index, rows, cols] |= torch.from_numpy(win.weight > above)
    return region


def assert_changed_only_in_faces(out: torch.Tensor, before: torch.Tensor, faces: FaceSet):
    changed = (out != before).any(dim=-1)
    region = face_region(faces)
    assert changed.any(), "no face was blended in"
    assert not (changed & ~region).any(), "pixels outside every face changed"
    for i, item in enumerate(faces.faces):  # every image with a face got it
        assert changed[i].any() == bool(item)


def smoother_and_larger(crops: torch.Tensor) -> torch.Tensor:
    """Another restorer, NCHW: its own output size (1.5x) and a visible change (a strong blur;
    a colour change would not show: the blend matches the face's histogram to the photo)."""
    big = F.interpolate(crops, scale_factor=1.5, mode="bicubic", align_corners=False)
    return F.avg_pool2d(big, 31, stride=1, padding=15, count_include_pad=False).clamp(0, 1)


def roughness(image: torch.Tensor, region: torch.Tensor) -> float:
    """Mean absolute horizontal difference of neighbours inside ``region`` ``[B, H, W]``."""
    d = (image[:, :, 1:] - image[:, :, :-1]).abs().mean(dim=-1)
    return float(d[region[:, :, 1:] & region[:, :, :-1]].mean())


# -- detection records detections; consumers align at their own size --------------------------

def test_detect_records_detections_and_the_photos(photos, fake_detector):
    (faces,) = DETECT.detect(photos, fake_detector(2))
    assert isinstance(faces, FaceSet) and faces.face_size is None
    assert faces.source is photos  # a reference, not a copy
    assert faces.size == (H, W) and faces.batch == 2 and faces.count == 4
    for i, item in enumerate(faces.faces):
        for f in item:
            assert f.image_index == i and f.matrix is None and f.aligned is None
            assert f.landmarks.shape == (5, 2) and len(f.box) == 4


def test_faces_to_images_aligns_at_its_size(photos, fake_detector):
    (faces,) = DETECT.detect(photos, fake_detector(2))
    crops, aligned = TO_IMAGES.to_images(faces, 320)
    assert crops.shape == (4, 320, 320, 3) and crops.dtype == torch.float32
    assert aligned.face_size == 320 and aligned.count == 4 and aligned.source is photos
    ref = align_faces(nchw(photos), faces.nested(), face_size=320)
    torch.testing.assert_close(nchw(crops), torch.stack([f.aligned for it in ref for f in it]),
                               rtol=0, atol=0)
    assert faces.face_size is None  # the input is not changed
    default = OldPhotoFacesToImages.INPUT_TYPES()["required"]["size"][1]["default"]
    assert default == 512
    assert OldPhotoFacesToImages.VALIDATE_INPUTS(512) is True
    assert "multiple of 32" in OldPhotoFacesToImages.VALIDATE_INPUTS(500)


# -- any restorer between detection and blending ------------------------------------------------

def test_unmodified_crops_blend_back_as_the_reference(photos, fake_detector):
    (faces,) = DETECT.detect(photos, fake_detector(2))
    crops, aligned = TO_IMAGES.to_images(faces, 512)
    (out,) = BLEND.blend(photos, aligned, crops)
    ref = blend_faces(nchw(photos), [[f.with_(enhanced=f.aligned) for f in item]
                                     for item in aligned.faces])
    torch.testing.assert_close(out, nhwc(ref), rtol=0, atol=0)
    assert_changed_only_in_faces(out, photos, aligned)
    # the face itself came back: only resampling and 8-bit rounding separate it from the photo
    region = face_region(aligned)
    assert float((out - photos).abs().amax(dim=-1)[region].mean()) < 0.03


def test_restored_crops_of_another_size_blend_back(photos, fake_detector):
    (faces,) = DETECT.detect(photos, fake_detector(2))
    crops, aligned = TO_IMAGES.to_images(faces, 256)
    restored = nhwc(smoother_and_larger(nchw(crops)))  # what another pack's node would return
    assert restored.shape == (4, 384, 384, 3)
    (out,) = BLEND.blend(photos, aligned, restored)
    # the core's restorer seam computes the same (restored crops resized to the crop size)
    ref, _ = restore_faces(nchw(photos), None, smoother_and_larger, face_size=256,
                           faces=faces.nested())
    torch.testing.assert_close(out, nhwc(ref), rtol=0, atol=0)
    assert_changed_only_in_faces(out, photos, aligned)
    inner = face_region(aligned, above=0.99)  # the restored (smooth) faces show
    assert roughness(out, inner) < 0.5 * roughness(photos, inner)


def test_faces_of_one_batch_blend_into_its_restored_version(photos, fake_detector):
    (faces,) = DETECT.detect(photos, fake_detector(1))
    crops, aligned = TO_IMAGES.to_images(faces, 256)
    brighter = (photos * 1.2).clamp(0, 1)  # e.g. the globally restored photos, same size
    restored = smoother_and_larger(nchw(crops))  # restored from the crops of `photos`
    (out,) = BLEND.blend(brighter, aligned, nhwc(restored))
    # the core: the restored crops (resized to 256) are blended into the brighter photos
    ref = blend_faces(nchw(brighter), enhance_faces(aligned.nested(), lambda _: restored))
    torch.testing.assert_close(out, nhwc(ref), rtol=0, atol=0)
    assert_changed_only_in_faces(out, brighter, aligned)


def test_detections_align_at_the_crops_size(photos, fake_detector):
    """FACES straight from 'Detect Faces' (never aligned) align at the restored crops' side, the
    geometry 'Faces To Images' used at that size; a side that cannot be one gives 512."""
    (faces,) = DETECT.detect(photos, fake_detector(1))
    crops, aligned = TO_IMAGES.to_images(faces, 256)
    (via_faces_to_images,) = BLEND.blend(photos, aligned, crops)
    (via_detections,) = BLEND.blend(photos, faces, crops)
    torch.testing.assert_close(via_detections, via_faces_to_images, rtol=0, atol=0)
    odd = nhwc(F.interpolate(nchw(crops), size=(300, 300), mode="bilinear"))
    (out,) = BLEND.blend(photos, faces, odd)
    (same,) = BLEND.blend(photos, TO_IMAGES.to_images(faces, 512)[1], odd)
    torch.testing.assert_close(out, same, rtol=0, atol=0)


def test_restored_count_must_match(photos, fake_detector):
    (faces,) = DETECT.detect(photos, fake_detector(2))
    crops, aligned = TO_IMAGES.to_images(faces, 128)
    with pytest.raises(InputError, match=r"3 crop\(s\) but there are 4 face\(s\)"):
        BLEND.blend(photos, aligned, crops[:3])
    with pytest.raises(InputError, match=r"8 crop\(s\) but there are 4 face\(s\)"):
        BLEND.blend(photos, aligned, torch.cat([crops, crops]))
    with pytest.raises(InputError, match=r"an empty batch but there are 4 face\(s\)"):
        BLEND.blend(photos, aligned, crops[:0])
    with pytest.raises(InputError, match="80x96 images but the image is 80x48"):
        BLEND.blend(photos[:, :48], aligned, crops)


def test_no_faces_give_one_placeholder_crop(photos, fake_detector, oldphoto_logs):
    (faces,) = DETECT.detect(photos, fake_detector(0))
    crops, aligned = TO_IMAGES.to_images(faces, 512)
    assert crops.shape == (1, 512, 512, 3) and not crops.any() and aligned.count == 0
    assert "one black 512x512 crop" in oldphoto_logs.text
    (out,) = BLEND.blend(photos, aligned, crops * 0.5)
    assert torch.equal(out, photos)


# -- whole graphs, as ComfyUI runs them ---------------------------------------------------------

def _gaussian_blur(image: torch.Tensor, blur_radius: int, sigma: float) -> torch.Tensor:
    """ComfyUI's ImageBlur (comfy_extras/nodes_post_processing.py), on an IMAGE."""
    k = blur_radius * 2 + 1
    x, y = torch.meshgrid(torch.linspace(-1, 1, k), torch.linspace(-1, 1, k), indexing="ij")
    g = torch.exp(-(x * x + y * y) / (2.0 * sigma * sigma))
    kernel = (g / g.sum()).repeat(3, 1, 1).unsqueeze(1)
    padded = F.pad(nchw(image), (blur_radius,) * 4, "reflect")
    out = F.conv2d(padded, kernel, padding=k // 2, groups=3)
    return nhwc(out[:, :, blur_radius:-blur_radius, blur_radius:-blur_radius])


def core_nodes(photo: torch.Tensor) -> tuple[dict, dict]:
    """Stand-ins for the ComfyUI core nodes of our workflows, and what SaveImage saved."""
    saved: dict[str, torch.Tensor] = {}

    def save(images, filename_prefix):
        saved[filename_prefix] = images
        return ()

    nodes = {
        "LoadImage": lambda image: (photo, torch.zeros(photo.shape[:3])),
        "SaveImage": save,
        "PreviewImage": lambda images: (),
        "MaskToImage": lambda mask: (mask[..., None].expand(-1, -1, -1, 3),),
        "ImageBlur": lambda image, blur_radius, sigma: (_gaussian_blur(image, blur_radius,
                                                                       sigma),),
    }
    return nodes, saved


def run_prompt(prompt: dict, core: dict) -> dict[str, tuple]:
    """Run an API prompt as ComfyUI's executor does (execution.get_input_data): a link gives
    the upstream output, a widget value reaches the node only if the node declares that input
    (an input of an older version of the node is dropped), VALIDATE_INPUTS sees the widget
    values it names, and every node runs in inference mode."""
    results: dict[str, tuple] = {}

    def run(nid: str) -> tuple:
        if nid in results:
            return results[nid]
        node = prompt[nid]
        kind = node["class_type"]
        args = {name: run(v[0])[v[1]] if isinstance(v, list) else v
                for name, v in node["inputs"].items()}
        if kind in NODE_CLASS_MAPPINGS:
            cls = NODE_CLASS_MAPPINGS[kind]
            spec = cls.INPUT_TYPES()
            declared = {**spec.get("required", {}), **spec.get("optional", {})}
            missing = sorted(set(spec["required"]) - set(args))
            assert not missing, f"{kind}#{nid}: required input(s) missing: {missing}"
            args = {k: v for k, v in args.items() if k in declared}
            check = getattr(cls, "VALIDATE_INPUTS", None)
            if check is not None:
                wanted = inspect.signature(check).parameters
                widgets = {k: v for k, v in args.items()
                           if k in wanted and not isinstance(node["inputs"][k], list)}
                assert check(**widgets) is True, f"{kind}#{nid}: {check(**widgets)}"
            fn = getattr(cls(), cls.FUNCTION)
        else:
            fn = core[kind]
        with torch.inference_mode():
            results[nid] = fn(**args)
        return results[nid]

    for nid in prompt:
        run(nid)
    return results


def defaults(node_id: str) -> dict:
    """The widget inputs of a node at their defaults, as a new node gets them in the editor."""
    spec = NODE_CLASS_MAPPINGS[node_id].INPUT_TYPES()
    return {name: entry[1]["default"] for name, entry in spec["required"].items()
            if len(entry) > 1 and "default" in entry[1]}


@pytest.fixture
def detector_finds(monkeypatch, fake_detector):
    """Make 'Load Old Photo Face Detector' give a fake detector finding ``n`` faces."""
    def use(n: int) -> None:
        monkeypatch.setattr(detector_loader, "_backend_problem", lambda backend, pack: None)
        monkeypatch.setattr(detector_loader, "make_face_detector",
                            lambda *a, **k: fake_detector(n).detector)
    return use


@pytest.mark.parametrize("role,size", [("face_256", 256), ("face_512", 512)])
def test_default_graph_runs_with_either_face_model(role, size, photos, use_models,
                                                   detector_finds):
    """Load Image -> Detect Faces -> Enhance Faces -> Blend Faces, every node at its defaults:
    the loader's face_size 'auto' picks 256 or 512 from the file, and the faces follow."""
    detector_finds(1)
    photo = photos[:1]
    model_name = ROLES[role].published_path
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "old_photo.png"}},
        "2": {"class_type": "OldPhotoFaceDetectorLoader",
              "inputs": defaults("OldPhotoFaceDetectorLoader")},
        "3": {"class_type": "OldPhotoFaceDetect",
              "inputs": {"image": ["1", 0], "face_detector": ["2", 0],
                         **defaults("OldPhotoFaceDetect")}},
        "4": {"class_type": "OldPhotoFaceModelLoader",
              "inputs": {"model_name": model_name, **defaults("OldPhotoFaceModelLoader")}},
        "5": {"class_type": "OldPhotoFaceEnhance",
              "inputs": {"faces": ["3", 0], "face_model": ["4", 0]}},
        "6": {"class_type": "OldPhotoBlend", "inputs": {"image": ["1", 0], "faces": ["5", 0]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0],
                                                    "filename_prefix": "restored"}},
    }
    assert defaults("OldPhotoFaceModelLoader") == {"face_size": "auto"}
    core, saved = core_nodes(photo)
    results = run_prompt(prompt, core)
    (model,), (detected,), (enhanced,) = results["4"], results["3"], results["5"]
    assert model.face_size == size and detected.face_size is None
    assert enhanced.face_size == size and enhanced.count == 1 and enhanced.enhanced
    face = enhanced.flat[0]
    assert face.aligned.shape == face.enhanced.shape == (3, size, size)
    ref = align_faces(nchw(photo), detected.nested(), face_size=size)[0][0]
    torch.testing.assert_close(face.aligned, ref.aligned, rtol=0, atol=0)
    assert (face.matrix == ref.matrix).all()
    out = saved["restored"]
    torch.testing.assert_close(out, nhwc(blend_faces(nchw(photo), enhanced.nested())),
                               rtol=0, atol=0)
    assert_changed_only_in_faces(out, photo, enhanced)


def _api(name: str) -> dict:
    api = json.loads((API_DIR / f"{name}.api.json").read_text())
    return {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()}


def test_the_shipped_interop_workflow_runs(photos, detector_finds):
    """example_workflows/api/oldphoto_face_interop: Detect Faces -> Faces To Images -> a core
    node standing in for another pack's restorer -> Blend Faces."""
    detector_finds(1)
    prompt = _api("oldphoto_face_interop")
    kinds = [n["class_type"] for n in prompt.values()]
    assert {"OldPhotoFaceDetect", "OldPhotoFacesToImages", "ImageBlur", "OldPhotoBlend"} \
        <= set(kinds)
    blur = next(n["inputs"] for n in prompt.values() if n["class_type"] == "ImageBlur")
    core, saved = core_nodes(photos)
    results = run_prompt(prompt, core)
    (out,) = saved.values()
    detected = next(results[k][0] for k, n in prompt.items()
                    if n["class_type"] == "OldPhotoFaceDetect")
    crops, aligned = next(results[k] for k, n in prompt.items()
                          if n["class_type"] == "OldPhotoFacesToImages")
    assert crops.shape == (2, 512, 512, 3) and aligned.face_size == 512

    def restorer(x):
        return nchw(_gaussian_blur(nhwc(x), blur["blur_radius"], blur["sigma"]))

    ref, _ = restore_faces(nchw(photos), None, restorer, face_size=512,
                           faces=detected.nested())
    torch.testing.assert_close(out, nhwc(ref), rtol=0, atol=0)
    assert_changed_only_in_faces(out, photos, aligned)


def test_prompts_saved_with_face_size_on_detect_faces_still_run(photos, use_models,
                                                                detector_finds):
    """An API prompt saved before the crop size moved to the consumers has ``face_size`` on
    'Detect Faces'; ComfyUI drops the input the node no longer declares. Even with that old
    value (256) and a 512 px face model, which used to fail, the faces follow the model."""
    detector_finds(1)
    old = _api("oldphoto_full_restoration")
    by_kind = {n["class_type"]: n for n in old.values()}
    assert "face_size" not in by_kind["OldPhotoFaceDetect"]["inputs"]  # the shipped twin
    assert by_kind["OldPhotoFaceModelLoader"]["inputs"]["face_size"] == "auto"
    by_kind["OldPhotoFaceDetect"]["inputs"]["face_size"] = "256"
    by_kind["OldPhotoFaceModelLoader"]["inputs"]["model_name"] = \
        ROLES["face_512"].published_path
    core, saved = core_nodes(photos[:1])
    results = run_prompt(old, core)
    ids = {n["class_type"]: k for k, n in old.items()}
    (enhanced,) = results[ids["OldPhotoFaceEnhance"]]
    assert enhanced.face_size == 512 and enhanced.count == 1
    assert saved["oldphoto/restored"].shape == photos[:1].shape
    # a Python caller passing the old argument is fine too
    (detector,) = results[ids["OldPhotoFaceDetectorLoader"]]
    (faces,) = DETECT.detect(photos[:1], detector, face_size="256")
    assert faces.face_size is None and faces.count == 1


def test_faces_to_images_is_registered():
    assert NODE_DISPLAY_NAME_MAPPINGS["OldPhotoFacesToImages"] == "Faces To Images"
    cls = NODE_CLASS_MAPPINGS["OldPhotoFacesToImages"]
    assert cls.CATEGORY == NODE_CLASS_MAPPINGS["OldPhotoFaceDetect"].CATEGORY
    assert cls.RETURN_TYPES == ("IMAGE", "OLDPHOTO_FACES")
    blend = NODE_CLASS_MAPPINGS["OldPhotoBlend"].INPUT_TYPES()
    assert blend["optional"]["restored_faces"][0] == "IMAGE"
