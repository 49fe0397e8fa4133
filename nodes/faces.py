"""Face nodes (paper §3.4): detect, enhance (or hand the crops to any restorer), blend back.

``OLDPHOTO_FACES`` is a :class:`~.face_set.FaceSet`: per batch item the detections (box, score,
5 landmarks) plus the photos they were found in. Crops are cut by whoever consumes the faces, at
its own size ('Enhance Faces' at its model's, 'Faces To Images' at its widget's), and 'Blend
Faces' warps them back with the inverse of that same alignment, so the face size can never
disagree between nodes. Records are immutable; every node returns new ones.
"""

from __future__ import annotations

import logging

import torch

from oldphoto_core.errors import InputError
from oldphoto_core.faces import blend_faces, detect_faces, enhance_faces

from . import comfy_compat as compat
from .convert import image_to_nchw, nchw_to_image, to_rgb
from .face_set import FaceSet, check_faces
from .runtime import (
    FaceDetectorHandle,
    Steps,
    check_precision,
    each_image,
    expect_model,
    models_on_device,
    precision_input,
)
from .types import CATEGORY, FACE_DETECTOR, FACE_MODEL, FACES, IMAGE, INT

log = logging.getLogger("oldphoto")

__all__ = ["CROP_SIZE", "FACE_NODES", "FaceSet", "OldPhotoBlend", "OldPhotoFaceDetect",
           "OldPhotoFaceEnhance", "OldPhotoFacesToImages", "check_faces"]

#: Default crop side of 'Faces To Images' (what CodeFormer, GFPGAN and GPEN-512 take), also used
#: by 'Blend Faces' for restored crops of detections that were never aligned, when the crops'
#: own side cannot be an alignment size.
CROP_SIZE = 512
#: Working memory asked for per crop pixel when the face generator goes to the device (one face:
#: about 200 MB at 256 px); the generator then sizes its chunks to what is free.
_FACE_BYTES = 3072


def _valid_crop_side(side: int) -> bool:
    return side >= 64 and side % 32 == 0


class OldPhotoFaceDetect:
    DISPLAY_NAME = "Detect Faces"
    CATEGORY = CATEGORY
    FUNCTION = "detect"
    RETURN_TYPES = (FACES,)
    RETURN_NAMES = ("faces",)
    OUTPUT_TOOLTIPS = ("Per image, the faces found (box, score, 5 landmarks) with the photos "
                       "they belong to. The node that uses them cuts the aligned crops at its "
                       "own size.",)
    DESCRIPTION = ("Finds faces (box + 5 landmarks), as the reference's face stage. Run it on "
                   "the globally restored photo. The crops are aligned later, at the size of "
                   "the node that consumes the faces ('Enhance Faces': its model's size; "
                   "'Faces To Images': its size widget).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": (IMAGE, {"tooltip": "Photos to find faces in (usually the output of "
                                         "'Decode Clean Photo')."}),
            "face_detector": (FACE_DETECTOR, {"tooltip": "From 'Load Old Photo Face "
                                                         "Detector'."}),
        }}

    def detect(self, image, face_detector, face_size=None):
        """Detect the faces of every image.

        ``face_size`` is accepted and ignored: it was this node's widget before the crop size
        moved to the consumers. ComfyUI drops an input a node does not declare (an API prompt
        saved with it still runs) and the editor ignores the extra widget value of a saved UI
        workflow; this parameter keeps Python callers that pass it working too.
        """
        node = self.DISPLAY_NAME
        if not isinstance(face_detector, FaceDetectorHandle):
            raise InputError(f"{node}: input 'face_detector' expects the output of 'Load Old "
                             f"Photo Face Detector', got {type(face_detector).__name__}")
        images = image_to_nchw(image)
        b = images.shape[0]
        found = each_image(b, lambda i: detect_faces(images[i:i + 1],
                                                     face_detector.detector)[0], node=node)
        faces = FaceSet.detected(image, found)
        if faces.count == 0:
            log.info("%s: no faces found in %d image(s) (%s)", node, b, face_detector.backend)
        else:
            log.info("%s: %d face(s) in %d image(s)", node, faces.count, b)
        return (faces,)


class OldPhotoFaceEnhance:
    DISPLAY_NAME = "Enhance Faces"
    CATEGORY = CATEGORY
    FUNCTION = "enhance"
    RETURN_TYPES = (FACES,)
    RETURN_NAMES = ("faces",)
    OUTPUT_TOOLTIPS = ("The faces aligned at the model's size, with their enhanced crops, for "
                       "'Blend Faces'.",)
    DESCRIPTION = ("Aligns every face at the face model's size (256 or 512, from the photos "
                   "the faces were found in) and regenerates it with the paper's SPADE face "
                   "generator, all faces of the batch together.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "faces": (FACES, {"tooltip": "From 'Detect Faces' (or 'Faces To Images'): they are "
                                         "aligned here at the model's size."}),
            "face_model": (FACE_MODEL, {"tooltip": "From 'Load Old Photo Face Enhancer'; its "
                                                   "face_size decides the crop size."}),
        }, "optional": {"precision": precision_input()}}

    def enhance(self, faces, face_model, precision="exact"):
        node = self.DISPLAY_NAME
        model = expect_model(face_model, "face_enhancer", node=node, input_name="face_model")
        precision = check_precision(precision, node=node)
        if model.face_size is None:
            raise InputError(f"{node}: the face model '{model.name}' has no face size; load "
                             "it with 'Load Old Photo Face Enhancer'")
        faces = check_faces(faces, node=node).aligned_at(model.face_size)
        if faces.count == 0:
            log.info("%s: no faces to enhance", node)
            return (faces,)
        steps = Steps(faces.count)
        # the generator runs the faces in chunks sized to the device's free memory
        # (oldphoto_core.faces.faces_per_chunk); out of device memory, one face at a time
        with models_on_device(model, memory_required=_FACE_BYTES * model.face_size**2,
                              precision=precision):
            for budget in (None, 1):  # MB; 1 is below one face: one face per chunk
                try:
                    out = enhance_faces(faces.nested(), model.descriptor,
                                        memory_budget_mb=budget, progress=steps.absolute)
                    break
                except Exception as exc:
                    if budget is not None or not compat.is_out_of_memory(exc):
                        raise
                # retried here, after the failed attempt's tensors went with the exception
                compat.soft_empty_cache()
                log.warning("%s: out of device memory; enhancing one face at a time", node)
        return (faces.with_faces(out),)


class OldPhotoFacesToImages:
    DISPLAY_NAME = "Faces To Images"
    CATEGORY = CATEGORY
    FUNCTION = "to_images"
    RETURN_TYPES = (IMAGE, FACES)
    RETURN_NAMES = ("face_crops", "faces")
    OUTPUT_TOOLTIPS = (
        "The aligned face crops as an IMAGE batch (size x size, every face of every image, in "
        "order) for any face restorer (CodeFormer, GFPGAN, GPEN ...). Without faces: one black "
        "crop, so that the restorer never gets an empty batch ('Blend Faces' ignores it).",
        "The faces aligned at this size, for 'Blend Faces' (with the restored crops).")
    DESCRIPTION = ("Cuts the faces out as aligned square crops (the reference's 5-point "
                   "template), so that a face restorer from another pack can sit between "
                   "'Detect Faces' and 'Blend Faces'.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "faces": (FACES, {"tooltip": "From 'Detect Faces'."}),
            "size": (INT, {"default": CROP_SIZE, "min": 64, "max": 2048, "step": 32,
                           "tooltip": "Side of the crops in pixels, a multiple of 32: what the "
                                      "restorer expects (512 for CodeFormer and GFPGAN). "
                                      "'Blend Faces' accepts the restored crops at any size."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, size=CROP_SIZE):
        return True if isinstance(size, int) and _valid_crop_side(size) else \
            f"size must be a multiple of 32 from 64 to 2048, got {size!r}"

    def to_images(self, faces, size=CROP_SIZE):
        node = self.DISPLAY_NAME
        faces = check_faces(faces, node=node).aligned_at(int(size))
        if faces.count == 0:
            log.warning("%s: no faces; one black %dx%d crop is output in their place "
                        "('Blend Faces' ignores it)", node, size, size)
            crops = torch.zeros(1, 3, int(size), int(size))
        else:
            crops = torch.stack([f.aligned for f in faces.flat])
        return (nchw_to_image(crops), faces)


class OldPhotoBlend:
    DISPLAY_NAME = "Blend Faces"
    CATEGORY = CATEGORY
    FUNCTION = "blend"
    RETURN_TYPES = (IMAGE,)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("The photos with the enhanced faces blended in (unchanged where there "
                       "is no face).",)
    DESCRIPTION = ("Colour-matches each enhanced (or restored) face to the photo, warps it "
                   "back with the inverse of its alignment and blends it with a feathered "
                   "mask, as the reference.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": (IMAGE, {"tooltip": "The photos the faces were detected in (or their "
                                             "restored version, same size)."}),
                "faces": (FACES, {"tooltip": "From 'Enhance Faces', or from 'Faces To Images' "
                                             "with restored_faces connected."}),
            },
            "optional": {
                "restored_faces": (IMAGE, {
                    "tooltip": "Face crops restored by any node (e.g. CodeFormer, GFPGAN) from "
                               "the crops of 'Faces To Images': one per face, in order, any "
                               "size (resized to the alignment size). They replace enhanced "
                               "crops."}),
            },
        }

    def blend(self, image, faces, restored_faces=None):
        node = self.DISPLAY_NAME
        images = image_to_nchw(image)
        b, _, h, w = images.shape
        faces = check_faces(faces, node=node, batch=b, size=(h, w))
        if faces.count == 0:
            log.info("%s: no faces; the image is returned unchanged", node)
            return (image,)
        if restored_faces is not None:
            faces = self._with_restored(faces, restored_faces)
        elif not faces.enhanced:
            raise InputError(f"{node}: the faces have no enhanced crops: connect 'Enhance "
                             "Faces' between 'Detect Faces' and 'Blend Faces', or restored "
                             "crops of 'Faces To Images' to restored_faces")
        nested = faces.nested()
        out = each_image(b, lambda i: blend_faces(images[i:i + 1], [nested[i]]) if nested[i]
                         else images[i:i + 1], node=node)
        return (nchw_to_image(torch.cat(out)),)

    def _with_restored(self, faces: FaceSet, restored: object) -> FaceSet:
        """The faces with ``restored`` as their enhanced crops (resized to the alignment size
        by the core's restorer seam, :func:`oldphoto_core.faces.enhance_faces`)."""
        node = self.DISPLAY_NAME
        if isinstance(restored, torch.Tensor) and restored.ndim == 4 and not restored.shape[0]:
            raise InputError(f"{node}: restored_faces is an empty batch but there are "
                             f"{faces.count} face(s)")
        crops = to_rgb(image_to_nchw(restored, name=f"{node}: restored_faces"), node=node)
        crops = crops.contiguous()
        n, _, ch, cw = crops.shape
        if faces.face_size is None:
            # detections never aligned: align at the crops' own side when it can be one (the
            # template scales with the side, so this is the geometry 'Faces To Images' used)
            side = ch if ch == cw and _valid_crop_side(ch) else CROP_SIZE
            faces = faces.aligned_at(side)
        if n != faces.count:
            raise InputError(f"{node}: restored_faces has {n} crop(s) but there are "
                             f"{faces.count} face(s); connect the restored crops of 'Faces To "
                             "Images' made from these same faces (one per face, in order)")
        if (ch, cw) != (faces.face_size, faces.face_size):
            log.info("%s: restored crops of %dx%d are resized to the alignment size %dx%d", node,
                     cw, ch, faces.face_size, faces.face_size)
        if faces.enhanced:
            log.info("%s: restored_faces replaces the faces' enhanced crops", node)
        return faces.with_faces(enhance_faces(faces.nested(), lambda _aligned: crops))


FACE_NODES = {cls.__name__: cls for cls in (OldPhotoFaceDetect, OldPhotoFaceEnhance,
                                              OldPhotoFacesToImages, OldPhotoBlend)}
