"""The data contract's types, shared by readers, shards, checkpoints and the loader:
class metadata, the in-memory sample, and the errors that entry points turn into one line and
exit code 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np


class Sample(TypedDict, total=False):
    """One sample in memory: `image` uint8 (H, W, 3) RGB; `layout` int (H, W) class indices with
    `ignore_index` where unlabelled; `depth` float32 (H, W), 0 or NaN where unknown, absent when
    the dataset has none; `meta` (source, dataset, split, id, seed, ...)."""

    image: np.ndarray
    layout: np.ndarray
    depth: np.ndarray
    meta: dict[str, Any]


class ConfigError(ValueError):
    """A recipe or command line that cannot be turned into a valid configuration."""


class DatasetError(ValueError):
    """A dataset that cannot be read as declared (missing files, bad labels, size mismatch)."""


class ShardError(DatasetError):
    """A shard or shard folder that cannot be written or read as declared."""


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or made for other classes."""


@dataclass(frozen=True)
class ClassInfo:
    """Class names, their RGB palette `(C, 3)` and the ignore label."""

    names: tuple[str, ...]
    palette: np.ndarray
    ignore_index: int = 255

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def to_dict(self) -> dict[str, Any]:
        return {
            "classes": list(self.names),
            "palette": np.asarray(self.palette).astype(int).tolist(),
            "ignore_index": int(self.ignore_index),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ClassInfo":
        return cls(tuple(d["classes"]), np.asarray(d["palette"], dtype=np.uint8), int(d["ignore_index"]))

    def same_as(self, other: "ClassInfo") -> bool:
        return self.names == other.names and self.ignore_index == other.ignore_index
