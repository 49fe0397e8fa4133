"""Progress of long computations inside a network call, reported to whoever asked for it.

The exact attention of the scratch mapping is the one step that can run for minutes (38 of them
for a 2000x3008 scan on a 2-core CPU, measured). Its caller is several layers away (the CLI's
progress bar, a ComfyUI node's bar and interrupt check), and the networks' ``forward``
signatures follow the reference, so the callback travels in a context variable instead of an
argument: :func:`reporting` installs it around a call, :func:`report` is what the computation
calls. A callback may raise (e.g. ComfyUI's interrupt) to abort the computation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["Progress", "reporting", "report", "responsive", "is_responsive"]

#: ``progress(done, total)``; may raise to abort.
Progress = Callable[[int, int], None]

_HOOK: ContextVar[Progress | None] = ContextVar("oldphoto_progress", default=None)
_RESPONSIVE: ContextVar[bool] = ContextVar("oldphoto_responsive", default=False)


@contextmanager
def reporting(progress: Progress | None) -> Iterator[None]:
    """Within the block, long computations call ``progress(done, total)`` as they advance."""
    with _setting(_HOOK, progress):
        yield


def report(done: int, total: int) -> None:
    """Tell the installed callback, if any, that ``done`` of ``total`` units are finished."""
    hook = _HOOK.get()
    if hook is not None:
        hook(done, total)


@contextmanager
def responsive() -> Iterator[None]:
    """Within the block, long computations report in small steps, so that a callback that
    aborts (ComfyUI's Cancel) takes effect within a second.

    Outside it they report in the steps that run fastest: on a 2-core CPU the attention of a
    496x624 photo takes 2-4 s longer in small steps (each call of the fused kernel re-packs all
    keys), which a command-line batch has no reason to pay. Results are the same either way.
    """
    with _setting(_RESPONSIVE, True):
        yield


def is_responsive() -> bool:
    """Whether the caller asked for small steps (:func:`responsive`)."""
    return _RESPONSIVE.get()


@contextmanager
def _setting(var: ContextVar, value: object) -> Iterator[None]:
    """``var`` holds ``value`` within the block, its previous value after."""
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)
