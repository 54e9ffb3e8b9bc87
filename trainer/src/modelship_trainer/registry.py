"""Find a recipe by name: built-in first, then the `modelship.recipes` entry point group."""

from __future__ import annotations

from importlib.metadata import entry_points

from modelship_trainer.errors import InvalidSpecError, TrainerError
from modelship_trainer.recipe import Recipe
from modelship_trainer.surface_defects import SurfaceDefectsRecipe

ENTRY_POINT_GROUP = "modelship.recipes"
BUILTIN: dict[str, type[Recipe]] = {SurfaceDefectsRecipe.name: SurfaceDefectsRecipe}


def available_recipes() -> list[str]:
    return sorted(set(BUILTIN) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def load_recipe(name: str) -> Recipe:
    if name in BUILTIN:
        return BUILTIN[name]()
    found = list(entry_points(group=ENTRY_POINT_GROUP, name=name))
    if not found:
        raise InvalidSpecError(f"unknown recipe {name!r}; available: "
                          f"{', '.join(available_recipes())}")
    try:
        obj = found[0].load()
    except Exception as exc:  # an installed plug-in failing to import is the run's failure
        raise TrainerError(f"recipe {name!r} ({found[0].value}) failed to load: {exc}",
                           reason="RecipeLoadFailed") from exc
    if callable(obj) and not isinstance(obj, Recipe):
        obj = obj()  # a Recipe subclass or a factory
    if not isinstance(obj, Recipe):
        raise InvalidSpecError(f"entry point {name!r} ({found[0].value}) is not a "
                          "modelship_trainer.recipe.Recipe")
    return obj
