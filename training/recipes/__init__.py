"""Recipes: whole model sets trained by one resumable command,
``python -m training recipe NAME --out DIR`` (see :mod:`training.recipes.runner`)."""

from __future__ import annotations

from .default import DEFAULT
from .runner import Recipe, Step, run_recipe

__all__ = ["RECIPES", "Recipe", "Step", "run_recipe"]

RECIPES: dict[str, Recipe] = {DEFAULT.name: DEFAULT}
