"""Seeds derived from integers, never from process counts or global state.

Every random draw in synthdata takes a seed from `derive_seed(recipe_seed, a, b, ...)`, so the
same (recipe seed, shard index, position) gives the same sample on 1 or 64 processes.
"""

from __future__ import annotations

import numpy as np
import torch


def derive_seed(*keys: int) -> int:
    """A 63-bit seed that depends only on `keys` (stable across runs, platforms, processes)."""
    state = np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in keys] + [len(keys)])
    return int(state.generate_state(2, dtype=np.uint32).astype(np.uint64).dot([1 << 31, 1]))


def numpy_rng(*keys: int) -> np.random.Generator:
    return np.random.default_rng(derive_seed(*keys))


def torch_generator(*keys: int, device: str | torch.device = "cpu") -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(*keys))
    return gen
