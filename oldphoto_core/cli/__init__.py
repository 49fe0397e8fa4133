"""The ``oldphoto`` command line and its engines: ``restore`` (local, or Ray with
:mod:`~oldphoto_core.cli.ray_engine`), ``models`` (list, verify, download), ``info``; the
restore manifest and other-filesystem paths they share. Nothing below imports it."""

from .commands import main

__all__ = ["main"]
