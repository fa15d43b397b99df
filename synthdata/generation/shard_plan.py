"""A production run's output folder: its shard plan, the settings it was made with
(`production.json`), and the checks that refuse, before any work, a run that would mix other
settings into it, leave more samples than asked for, or cannot work at all.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthdata.core.atomic import write_json_atomic
from synthdata.core.contract import ConfigError
from synthdata.core.recipe_loading import recipe_to_dict
from synthdata.core.result_keys import strip_unrecorded
from synthdata.data.shards import SIDECAR_SUFFIX, shard_fingerprint
from synthdata.generation.image_sources import image_source
from synthdata.generation.stages import check_harmonise

if TYPE_CHECKING:
    from synthdata.core.recipe import Recipe


def shard_sizes(num_samples: int, shard_size: int) -> list[int]:
    """Samples per shard: full shards and a shorter last one."""
    if num_samples < 0 or shard_size < 1:
        raise ValueError(f"need num_samples >= 0 and shard_size >= 1, got {num_samples}, {shard_size}")
    full, rest = divmod(num_samples, shard_size)
    return [shard_size] * full + ([rest] if rest else [])


PRODUCTION_FILE = "production.json"


def production_fingerprint(recipe: "Recipe") -> dict[str, Any]:
    """The recipe settings that decide what the samples are. Not in it: num_samples (a run may
    be extended), out and encode_workers; batch_size stays (it changes float rounding)."""

    tree = recipe_to_dict(recipe)
    produce = {k: v for k, v in tree["produce"].items() if k not in ("num_samples", "out", "encode_workers")}
    return {"seed": tree["seed"], "data": tree["data"], "stages": tree["stages"], "produce": produce}


def check_same_production(out_dir: Path, recipe: "Recipe") -> None:
    """Refuse to resume into a folder produced with other settings (record them otherwise)."""

    mine = json.loads(json.dumps(production_fingerprint(recipe)))
    path = Path(out_dir) / PRODUCTION_FILE
    holds_shards = any(Path(out_dir).glob("*.tar")) or any(Path(out_dir).glob("*.tar.json"))
    if path.is_file() and holds_shards:  # settings of a run that wrote nothing do not bind the next
        theirs = json.loads(path.read_text())
        # performance knobs, and keys newer than the folder at their old behaviour, do not count
        changed = _differences(strip_unrecorded(mine, before_unlisted=True),  # mine is not written here
                               strip_unrecorded(theirs, before_unlisted=True) if isinstance(theirs, dict) else {})
        if changed:
            raise ConfigError(
                f"{out_dir} holds shards produced with other settings ({', '.join(changed[:8])} differ from {path.name}); "
                "use another produce.out, or delete the folder to start over"
            )
    else:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, mine, sort_keys=True)


def _differences(mine: dict, theirs: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(mine) | set(theirs)):
        a, b = mine.get(key), theirs.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def check_production_settings(recipe: "Recipe") -> None:
    """produce.* values that cannot work, refused (ConfigError naming the key) before any work."""
    cfg = recipe.produce
    for key, low in (("num_samples", 0), ("shard_size", 1), ("batch_size", 1), ("max_attempts", 1),
                     ("hardness_max_copies", 1), ("encode_workers", 1)):
        value = getattr(cfg, key)
        if value < low:
            raise ConfigError(f"produce.{key} must be >= {low}, got {value}")
    check_harmonise(recipe.stages.image)
    if cfg.image_format not in ("png", "jpg"):
        raise ConfigError(f"produce.image_format must be one of ['png', 'jpg'], got {cfg.image_format!r}")
    if not cfg.prefix or any(c in cfg.prefix for c in "./\\"):
        raise ConfigError(f"produce.prefix must be a non-empty name without dots or slashes, got {cfg.prefix!r}")
    image = recipe.stages.image
    if image.object_classes is not None and not image_source(recipe).trains_image_network(recipe):
        raise ConfigError(f"stages.image.object_classes weights a trained image stage's losses: stages.image.arch="
                          f"{image.arch} trains none; leave it unset")
    if cfg.real_pixel_unlabelled and cfg.real_pixel_classes is None:
        raise ConfigError("produce.real_pixel_unlabelled keeps the photo's unlabelled pixels beside "
                          "produce.real_pixel_classes: set that too (all: every class)")
    if cfg.real_pixel_classes is not None and cfg.layouts == "generated":
        raise ConfigError("produce.real_pixel_classes keeps the photo's pixels of real layouts: it needs "
                          "produce.layouts=real or mixed")
    if cfg.hardness_max_copies > 1 and not image_source(recipe).varies_with_seed:
        raise ConfigError(f"produce.hardness_max_copies: stages.image.arch={recipe.stages.image.arch} paints a layout "
                          "the same every time, "
                          "so its copies would be identical; leave it at 1")
    if cfg.real_pixel_classes is not None and image_source(recipe).real_pixels_everywhere:
        raise ConfigError(f"produce.real_pixel_classes: stages.image.arch={recipe.stages.image.arch} textures every "
                          "region with real pixels already; leave it unset")


def check_no_extra_shards(out_dir: Path, recipe: "Recipe") -> None:
    """Refuse a run that plans fewer shards than the folder already holds complete: its manifest
    would list them all, more samples than produce.num_samples asks for."""
    cfg = recipe.produce
    planned = len(shard_sizes(cfg.num_samples, cfg.shard_size))
    extra, held = [], 0
    for sidecar in sorted(Path(out_dir).glob(f"{cfg.prefix}-*.tar.json")):
        index = sidecar.name[len(cfg.prefix) + 1: -len(".tar.json")]
        try:
            record = json.loads(sidecar.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        held += int(record.get("samples", 0))
        if index.isdigit() and int(index) >= planned:
            extra.append(sidecar.name[: -len(".json")])
    if extra:
        raise ConfigError(
            f"{out_dir} already holds {held} samples, shards up to {extra[-1]}, more than "
            f"produce.num_samples={cfg.num_samples} plans ({planned} shards); give produce.num_samples={held} "
            "or more, another produce.out, or delete the extra shards"
        )


def check_complete_sizes(writer: Any, shards: list[tuple[int, int]]) -> None:
    """A complete shard must hold at least its planned samples (num_samples may have grown)."""

    for index, size in shards:
        if writer.is_complete(index):
            sidecar = writer.out_dir / (writer.shard_name(index) + ".json")
            held = json.loads(sidecar.read_text()).get("samples", 0)
            if held < size:
                raise ConfigError(
                    f"{sidecar.with_suffix('')} holds {held} samples but this run plans {size} there "
                    "(produce.num_samples changed?); delete that shard to regenerate it"
                )


def check_planned_shards(writer: Any, sizes: list[int]) -> None:
    """Before a manifest is written for shards other processes made (`produce finalize=true` after
    array jobs): every planned shard is on disk whole (its sha256 is its sidecar's), holds its
    planned samples, and was written for these classes and this recipe. ConfigError naming the
    first shards that are not."""
    missing, foreign = [], []
    mine = shard_fingerprint(writer.classes, writer.recipe_name)
    for index, size in enumerate(sizes):
        name = writer.shard_name(index)
        if not writer.is_complete(index):
            missing.append(name)
            continue
        path = writer.out_dir / name
        record = json.loads(path.with_name(name + SIDECAR_SUFFIX).read_text())
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != record.get("sha256"):
            foreign.append(f"{path} (its bytes do not match the sha256 of {name}{SIDECAR_SUFFIX})")
        elif record.get("fingerprint") != mine:
            foreign.append(f"{path} (written for {record.get('fingerprint')}, not {mine})")
        elif record.get("samples") != size:
            foreign.append(f"{path} (holds {record.get('samples')} samples, the plan {size})")
    if missing:
        raise ConfigError(f"finalize: {len(missing)} of {len(sizes)} planned shards are not in {writer.out_dir}: "
                          f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} (an array job has not "
                          "finished, or failed: run it again with the same job=I/N)")
    if foreign:
        raise ConfigError(f"finalize: {len(foreign)} shards are not this production's: {'; '.join(foreign[:3])}; "
                          "delete them and run their array jobs again")
