"""Quantization recipes: versioned specs, each with one registered handler."""

from quantgate.quantize.recipes import (
    QuantizationResult,
    Recipe,
    apply_recipe,
    get_recipe,
    list_recipes,
    recipe_from_dict,
    recipe_to_dict,
)

__all__ = [
    "QuantizationResult",
    "Recipe",
    "apply_recipe",
    "get_recipe",
    "list_recipes",
    "recipe_from_dict",
    "recipe_to_dict",
]
