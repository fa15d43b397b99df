"""Which recipe keys decide a result, so that saved runs are recognised across versions.

Study fingerprints and run keys (`synthdata.experiments`) and a production folder's recorded
settings (`generation.shard_plan`) compare recipes as trees of what results depend on: keys no
result depends on (performance knobs) are left out, and so are keys added after runs existed,
while they hold the default that is the behaviour from before they existed. A new recipe key
belongs in one of the two lists (tests/experiments/test_study.py pins a fingerprint to catch one
that is not).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from synthdata.core.recipe_loading import recipe_to_dict

if TYPE_CHECKING:
    from synthdata.core.recipe import Recipe

KeyPath = tuple[str, ...]

# seg.model.channels_last: a memory layout, and train.compile: fused kernels, which like the thread
# count change float rounding only; train.init_from: a shorter run continued gives the same result;
# log_with: where losses are logged as well (experiment trackers)
NOT_RESULTS: tuple[KeyPath, ...] = (("data", "cache_mb"), ("study", "only"), ("seg", "model", "channels_last"),
                                    ("log_with",), ("study", "executor"), ("study", "executor_parameters"),
                                    ("train", "compile"), ("train", "init_from"), ("study", "stop_after"))
ADDED_DEFAULTS: dict[KeyPath, Any] = {("stages", "image", "harmonise_input"): "leave-one-out", ("eval", "flips"): [],
                                      ("stages", "layout", "presence_weight"): 0.0,
                                      ("stages", "layout", "class_conditioning"): False,
                                      ("stages", "layout", "presence_loss"): "l1",
                                      ("stages", "layout", "local_critic"): False,
                                      ("stages", "layout", "gp_every"): 1, ("stages", "layout", "gp_fraction"): 1.0, ("data", "val_fraction"): None,
                                      ("data", "allow_train_as_val"): False, ("train", "minutes"): None,
                                      ("seg", "online_copy_paste"): 0, ("seg", "online_copy_paste_p"): 0.5,
                                      ("stages", "image", "composite", "leave_one_out"): False,
                                      ("produce", "real_pixel_classes"): None,
                                      ("produce", "real_pixel_unlabelled"): False,
                                      ("stages", "image", "object_classes"): None,
                                      ("stages", "image", "object_share"): 0.5}
# Keys added after studies existed but before the list above did: fingerprints and run keys made
# since hold them, so they stay in; a cell finished before them matches without them (at default).
ADDED_UNLISTED: dict[KeyPath, Any] = {("stages", "image", "harmonise"): "none"}


def strip_unrecorded(tree: dict[str, Any], *, before_unlisted: bool = False) -> dict[str, Any]:
    """`tree` (a recipe as a dict, changed in place) less the keys above; `before_unlisted`: also
    the `ADDED_UNLISTED` keys at their defaults, as trees were before those keys existed."""
    added = {**ADDED_DEFAULTS, **(ADDED_UNLISTED if before_unlisted else {})}
    for path in (*NOT_RESULTS, *(p for p, default in added.items() if _at(tree, p) == default)):
        parent = _at(tree, path[:-1])
        if isinstance(parent, dict):
            parent.pop(path[-1], None)
    return tree


# the sections of a result tree a generator run's weights depend on (with the recipe seed)
GENERATOR_SECTIONS = ("data", "stages", "train")


def generator_settings(tree: dict[str, Any], *, steps: bool = True) -> dict[str, Any]:
    """The generator sections of result tree `tree`; `steps=False`: less `train.steps` (runs that
    differ only there form a budget ladder, `generation.continuation`)."""
    out = {section: tree[section] for section in GENERATOR_SECTIONS}
    if not steps:
        out["train"] = {k: v for k, v in out["train"].items() if k != "steps"}
    return out


def result_tree(recipe: "Recipe", *, before_unlisted: bool = False) -> dict[str, Any]:
    """The recipe as a tree of what results depend on (`recipe_to_dict` less the keys above)."""
    return strip_unrecorded(recipe_to_dict(recipe), before_unlisted=before_unlisted)


def _at(tree: Any, path: KeyPath) -> Any:
    for key in path:
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree
