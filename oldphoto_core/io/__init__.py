"""Pixels in and out: reading and writing image files (:mod:`~oldphoto_core.io.images`) and
resampling them as the reference does (:mod:`~oldphoto_core.io.resample`)."""
