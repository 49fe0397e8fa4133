"""Face nodes (paper §3.4): detect + align, enhance, blend back.

``OLDPHOTO_FACES`` is, per batch item, a list of :class:`oldphoto_core.faces.Face` records (box,
score, 5 landmarks, the similarity to the aligned crop, the aligned crop, and the enhanced crop
once 'Enhance Faces' ran). Records are immutable; every node returns new ones.
"""

from __future__ import annotations

import logging

import torch

from oldphoto_core.errors import InputError
from oldphoto_core.faces import Face, align_faces, blend_faces, detect_faces, enhance_faces

from .convert import image_to_nchw, nchw_to_image
from .runtime import FaceDetectorHandle, Steps, expect_model, models_on_device
from .types import CATEGORY, FACE_DETECTOR, FACE_MODEL, FACES, IMAGE

log = logging.getLogger("oldphoto")

__all__ = ["FACE_NODES", "OldPhotoBlend", "OldPhotoFaceDetect", "OldPhotoFaceEnhance",
           "check_faces"]

FACE_SIZES = ("256", "512")


def check_faces(faces: object, *, node: str, batch: int | None = None) -> list[list[Face]]:
    """Check an OLDPHOTO_FACES value (one list of Face per batch item)."""
    if not isinstance(faces, (list, tuple)) or not all(
            isinstance(item, (list, tuple)) and all(isinstance(f, Face) for f in item)
            for item in faces):
        raise InputError(f"{node}: expected OLDPHOTO_FACES from 'Detect Faces', got "
                         f"{type(faces).__name__}")
    if batch is not None and len(faces) != batch:
        raise InputError(f"{node}: the faces were found in a batch of {len(faces)} images but "
                         f"the image batch has {batch}; use the same images (or their "
                         "restored version) that went into 'Detect Faces'")
    return [list(item) for item in faces]


class OldPhotoFaceDetect:
    DISPLAY_NAME = "Detect Faces"
    CATEGORY = CATEGORY
    FUNCTION = "detect"
    RETURN_TYPES = (FACES,)
    RETURN_NAMES = ("faces",)
    OUTPUT_TOOLTIPS = ("Per image, the faces found, aligned to the reference's 5-point template "
                       "(for 'Enhance Faces' and 'Blend Faces').",)
    DESCRIPTION = ("Finds faces (box + 5 landmarks) and cuts aligned crops, as the reference's "
                   "face stage. Run it on the globally restored photo.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": (IMAGE, {"tooltip": "Photos to find faces in (usually the output of "
                                         "'Decode Clean Photo')."}),
            "face_detector": (FACE_DETECTOR, {"tooltip": "From 'Load Old Photo Face "
                                                         "Detector'."}),
            "face_size": (FACE_SIZES, {
                "default": "256",
                "tooltip": "Size of the aligned crops: must match the face enhancer (256 for "
                           "Setting_9_epoch_100, 512 for FaceSR_512)."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, face_size="256"):
        return True if face_size in FACE_SIZES else \
            f"face_size must be one of {FACE_SIZES}, got {face_size!r}"

    def detect(self, image, face_detector, face_size="256"):
        node = self.DISPLAY_NAME
        if not isinstance(face_detector, FaceDetectorHandle):
            raise InputError(f"{node}: input 'face_detector' expects the output of 'Load Old "
                             f"Photo Face Detector', got {type(face_detector).__name__}")
        images = image_to_nchw(image)
        b = images.shape[0]
        steps = Steps(b)
        found: list[list[Face]] = []
        for i in range(b):
            steps.check()
            item = detect_faces(images[i:i + 1], face_detector.detector)[0]
            found.append([f.with_(image_index=i) for f in item])
            steps.advance()
        aligned = align_faces(images, found, face_size=int(face_size))
        n = sum(len(item) for item in aligned)
        if n == 0:
            log.info("%s: no faces found in %d image(s) (%s)", node, b, face_detector.backend)
        else:
            log.info("%s: %d face(s) in %d image(s)", node, n, b)
        return (aligned,)


class OldPhotoFaceEnhance:
    DISPLAY_NAME = "Enhance Faces"
    CATEGORY = CATEGORY
    FUNCTION = "enhance"
    RETURN_TYPES = (FACES,)
    RETURN_NAMES = ("faces",)
    OUTPUT_TOOLTIPS = ("The same faces with their enhanced crops, for 'Blend Faces'.",)
    DESCRIPTION = ("Regenerates every aligned face with the paper's SPADE face generator, all "
                   "faces of the batch together.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "faces": (FACES, {"tooltip": "From 'Detect Faces'."}),
            "face_model": (FACE_MODEL, {"tooltip": "From 'Load Old Photo Face Enhancer' (its "
                                                   "face_size must match 'Detect Faces')."}),
        }}

    def enhance(self, faces, face_model):
        node = self.DISPLAY_NAME
        model = expect_model(face_model, "face_enhancer", node=node, input_name="face_model")
        faces = check_faces(faces, node=node)
        flat = [f for item in faces for f in item]
        if not flat:
            log.info("%s: no faces to enhance", node)
            return (faces,)
        sizes = {f.face_size for f in flat}
        if sizes != {model.face_size}:
            raise InputError(f"{node}: the faces were aligned at {sorted(sizes)} px but the face "
                             f"model '{model.name}' runs at {model.face_size} px; set the same "
                             "face_size on 'Detect Faces' and 'Load Old Photo Face Enhancer'")
        steps = Steps(len(flat))
        with models_on_device(model.descriptor):
            out = enhance_faces(faces, model.descriptor, progress=steps.absolute)
        return (out,)


class OldPhotoBlend:
    DISPLAY_NAME = "Blend Faces"
    CATEGORY = CATEGORY
    FUNCTION = "blend"
    RETURN_TYPES = (IMAGE,)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("The photos with the enhanced faces blended in (unchanged where there "
                       "is no face).",)
    DESCRIPTION = ("Colour-matches each enhanced face to the photo, warps it back and blends it "
                   "with a feathered mask, as the reference.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": (IMAGE, {"tooltip": "The photos the faces were detected in."}),
            "faces": (FACES, {"tooltip": "From 'Enhance Faces'."}),
        }}

    def blend(self, image, faces):
        node = self.DISPLAY_NAME
        images = image_to_nchw(image)
        b = images.shape[0]
        faces = check_faces(faces, node=node, batch=b)
        if not any(faces):
            log.info("%s: no faces; the image is returned unchanged", node)
            return (image,)
        if any(f.enhanced is None for item in faces for f in item):
            raise InputError(f"{node}: the faces have not been enhanced: connect 'Enhance "
                             "Faces' between 'Detect Faces' and 'Blend Faces'")
        steps = Steps(b)
        out = []
        for i in range(b):
            steps.check()
            out.append(blend_faces(images[i:i + 1], [faces[i]]) if faces[i]
                       else images[i:i + 1])
            steps.advance()
        return (nchw_to_image(torch.cat(out)),)


FACE_NODES = {cls.__name__: cls for cls in (OldPhotoFaceDetect, OldPhotoFaceEnhance,
                                              OldPhotoBlend)}
