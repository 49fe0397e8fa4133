"""Faces (paper §3.4): detect, align, enhance with the SPADE generator, blend back.

Typical use (NCHW float images in [0, 1])::

    from oldphoto_core import load_model
    from oldphoto_core.faces import make_face_detector, restore_faces

    detector = make_face_detector("auto", insightface_root="ComfyUI/models/insightface")
    model = load_model("Setting_9_epoch_100/latest_net_G.pth", expect="face_enhancer")
    restored, faces = restore_faces(images, detector, model, face_size=256)

Each step is also available alone (:func:`detect_faces`, :func:`align_faces`,
:func:`enhance_faces`, :func:`blend_faces`) and passes :class:`Face` records along.
"""

from .align import TEMPLATE_SCALE, align_faces, estimate_similarity, face_template
from .blend import BlendWindow, blend_faces, blend_window, match_histograms
from .detect import (
    DETECTOR_KINDS,
    FaceDetector,
    detect_faces,
    find_insightface_model,
    make_face_detector,
)
from .enhance import CropRestorer, enhance_crops, enhance_faces, faces_per_chunk, restore_crops_with
from .restore import restore_faces
from .types import FACE_POINTS, Face

__all__ = [
    "BlendWindow", "DETECTOR_KINDS", "FACE_POINTS", "Face", "FaceDetector", "TEMPLATE_SCALE",
    "align_faces", "blend_faces", "blend_window", "detect_faces", "enhance_crops",
    "enhance_faces", "CropRestorer", "restore_crops_with", "estimate_similarity",
    "face_template", "faces_per_chunk",
    "find_insightface_model", "make_face_detector", "match_histograms", "restore_faces",
]
