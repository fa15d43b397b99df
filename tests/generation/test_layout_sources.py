"""Layout sources for production: generated, real (flip, copy-paste), mixed; all seed-driven."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from synthdata.core.seeding import numpy_rng
from synthdata.generation.layout_sources import (
    GeneratedLayouts,
    MixedLayouts,
    RealLayouts,
    build_layout_source,
)
from synthdata.texturing.copy_paste import copy_paste_objects

H, W = 32, 64


class SeedLayouts:
    """Stands in for a Pipeline: a constant layout whose value is the seed modulo 4."""

    def layouts_from_seeds(self, seeds):
        return torch.stack([torch.full((H, W), s % 4, dtype=torch.long) for s in seeds])


def scene(index: int) -> dict:
    """A real sample: road (0) below sky (1), plus a few small 'car' (2) and 'sign' (3) boxes."""
    layout = np.zeros((H, W), np.uint8)
    layout[: H // 2] = 1
    rng = np.random.default_rng(index)
    for cls in (2, 2, 3):
        top, left = int(rng.integers(0, H - 6)), int(rng.integers(0, W - 8))
        layout[top : top + 5, left : left + 7] = cls
    layout[0, 0] = 255  # an unlabelled pixel
    return {"layout": layout, "image": np.zeros((H, W, 3), np.uint8), "meta": {"id": f"scene{index}"}}


DATASET = [scene(i) for i in range(6)]


def test_generated_layouts_come_from_the_pipeline():
    layouts, metas = GeneratedLayouts(SeedLayouts()).layouts([5, 6])
    assert layouts.dtype == torch.long and layouts.shape == (2, H, W)
    assert layouts[0, 0, 0] == 1 and layouts[1, 0, 0] == 2
    assert metas == [{"layout_source": "generated"}] * 2


def test_real_layouts_are_seed_driven_and_batch_independent():
    source = RealLayouts(DATASET, height=H, width=W, copy_paste=2)
    seeds = list(range(100, 116))
    layouts, metas = source.layouts(seeds)
    again, _ = source.layouts(seeds[5:6])
    assert torch.equal(layouts[5], again[0])
    assert layouts.shape == (16, H, W)
    assert {m["layout_id"] for m in metas} <= {f"scene{i}" for i in range(6)}
    assert any(m.get("hflip") for m in metas) and not all(m.get("hflip") for m in metas)
    assert any(m.get("pasted_objects", 0) > 0 for m in metas)
    assert (layouts == 255).any()  # ignore survives


def test_real_layouts_resize_to_production_size():
    small = RealLayouts(DATASET, height=16, width=32, hflip=False)
    layouts, metas = small.layouts([1])
    assert layouts.shape == (1, 16, 32)
    assert set(torch.unique(layouts).tolist()) <= {0, 1, 2, 3, 255}


def test_real_layouts_reject_empty_dataset():
    with pytest.raises(ValueError, match="at least one sample"):
        RealLayouts([], height=H, width=W)


def test_copy_paste_keeps_classes_and_moves_only_objects():
    target = scene(0)["layout"].astype(np.int64)
    donor = scene(1)["layout"].astype(np.int64)
    for seed in range(20):
        out, pasted = copy_paste_objects(target, donor, numpy_rng(seed), num_objects=3)
        assert pasted >= 1
        assert set(np.unique(target)) <= set(np.unique(out))  # class-preserving
        changed = out != target
        # only small objects move: pasted pixels are car/sign, never road, sky or ignore
        assert set(np.unique(out[changed]).tolist()) <= {2, 3}
    only_signs, _ = copy_paste_objects(target, donor, numpy_rng(0), num_objects=3, classes=[3])
    assert set(np.unique(only_signs[only_signs != target]).tolist()) <= {3}


def test_copy_paste_without_objects_is_a_no_op():
    flat = np.zeros((H, W), np.int64)
    out, pasted = copy_paste_objects(flat, flat, numpy_rng(0), num_objects=2)
    assert pasted == 0 and np.array_equal(out, flat)


def test_mixed_layouts_keep_order_and_ratio():
    real = RealLayouts(DATASET, height=H, width=W)
    mixed = MixedLayouts(GeneratedLayouts(SeedLayouts()), real, real_ratio=0.5)
    seeds = list(range(200))
    layouts, metas = mixed.layouts(seeds)
    kinds = [m["layout_source"] for m in metas]
    assert 60 < kinds.count("real") < 140
    for i, (seed, kind) in enumerate(zip(seeds, kinds)):
        if kind == "generated":
            assert (layouts[i] == seed % 4).all()
        else:
            assert torch.equal(layouts[i], real.layouts([seed])[0][0])
    none_real = MixedLayouts(GeneratedLayouts(SeedLayouts()), real, real_ratio=0.0).layouts(seeds[:8])[1]
    assert all(m["layout_source"] == "generated" for m in none_real)
    with pytest.raises(ValueError, match="real_ratio"):
        MixedLayouts(GeneratedLayouts(SeedLayouts()), real, real_ratio=1.5)


def test_build_layout_source_names():
    assert isinstance(build_layout_source("generated", pipeline=SeedLayouts(), height=H, width=W), GeneratedLayouts)
    assert isinstance(build_layout_source("mixed", pipeline=SeedLayouts(), dataset=DATASET, height=H, width=W), MixedLayouts)
    with pytest.raises(ValueError, match="generated, real, mixed"):
        build_layout_source("dreamed", height=H, width=W)
    with pytest.raises(ValueError, match="real dataset"):
        build_layout_source("real", height=H, width=W)


def test_generated_layouts_get_pasted_objects_drawn_from_the_seed():
    """The hybrid of issue 32: objects of the training layouts pasted into GAN layouts."""
    source = build_layout_source("generated", pipeline=SeedLayouts(), dataset=DATASET, height=H, width=W,
                                 copy_paste=3, paste_classes=[2, 3])
    assert isinstance(source, GeneratedLayouts) and source.paster is not None
    seeds = list(range(300, 316))
    layouts, metas = source.layouts(seeds)
    plain, _ = GeneratedLayouts(SeedLayouts()).layouts(seeds)
    assert all(m["layout_source"] == "generated" and 1 <= m["pasted_objects"] <= 3 for m in metas)
    assert all((layouts[i] != plain[i]).any() for i in range(len(seeds)) if seeds[i] % 4 in (0, 1))
    for i, meta in enumerate(metas):
        changed = layouts[i] != plain[i]
        assert set(torch.unique(layouts[i][changed]).tolist()) <= {2, 3}  # only the named classes
        assert {p["class_index"] for p in meta["pasted"]} <= {2, 3}
    again, _ = source.layouts(seeds[3:5])  # seed-driven, batch-independent
    assert torch.equal(again, layouts[3:5])
    with pytest.raises(ValueError, match="training layouts"):  # no pool and no dataset to build one
        build_layout_source("generated", pipeline=SeedLayouts(), height=H, width=W, copy_paste=2)


def test_mixed_source_pastes_into_both_halves_from_one_pool():
    source = build_layout_source("mixed", pipeline=SeedLayouts(), dataset=DATASET, height=H, width=W,
                                 copy_paste=2)
    assert source.generated.paster is source.real.paster
    _, metas = source.layouts(list(range(64)))
    for kind in ("generated", "real"):
        assert any(m.get("pasted_objects", 0) > 0 for m in metas if m["layout_source"] == kind)


def test_real_layouts_stream_unchanged_by_the_paster():
    """Real layouts with copy-paste draw exactly what they drew before pasting moved into
    `ObjectPaster` (existing productions stay byte-identical): checksum pinned at 0af18d8."""
    layouts, metas = RealLayouts(DATASET, height=H, width=W, copy_paste=3).layouts(list(range(40)))
    assert hashlib.sha256(layouts.numpy().tobytes()).hexdigest()[:16] == "31af63c5228df1be"
    assert sum(m.get("pasted_objects", 0) for m in metas) == 79
