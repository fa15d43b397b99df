"""Plumbing every stage shares: the recipe schema and its loading (`recipe`), the data contract's
types and errors (`contract`), checkpoints, run directories, seeds, the Accelerator and threads
(`runtime`), entry-point error handling, resizing, palettes and pictures."""

# the modules other folders may import (tests/test_public_api.py checks it)
PUBLIC_MODULES = (
    "atomic",
    "checkpoint",
    "code_version",
    "contract",
    "entry",
    "folder_lock",
    "imageops",
    "palette",
    "recipe",
    "recipe_help",
    "recipe_loading",
    "result_keys",
    "run_dir",
    "runtime",
    "seeding",
    "tracking",
    "visualize",
)
