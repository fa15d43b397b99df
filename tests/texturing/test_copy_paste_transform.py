"""Copy-paste with real pixels as an online transform: determinism, pasted pixels that are their
bank segment's own, class choice, albumentations' Compose, the Dataset wrapper, bad options, and the
example of docs/python.md."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from synthdata.core.contract import ClassInfo  # noqa: E402
from synthdata.core.palette import default_palette  # noqa: E402
from synthdata.texturing.bank_building import build_bank  # noqa: E402
from synthdata.texturing.copy_paste_transform import CopyPaste, CopyPasteDataset  # noqa: E402
from synthdata.texturing.segment_bank import BankError  # noqa: E402

NAMES = ("road", "sky", "car", "pole")
ROAD, SKY, CAR, POLE = range(4)
CLASSES = ClassInfo(NAMES, default_palette(len(NAMES)))
README = Path(__file__).resolve().parents[2] / "docs" / "python.md"  # the examples of docs/python.md


def scene(i: int, rng: np.random.Generator, *, poles: bool = True) -> dict:
    """32x64: sky over road (the region classes), two cars and a pole (the things); bank pixels
    have red < 128, so a pixel with red < 128 in a target image (red >= 128) came from the bank."""
    layout = np.full((32, 64), ROAD, np.int64)
    layout[:12] = SKY
    for _ in range(2):
        y, x = rng.integers(14, 24), rng.integers(2, 54)
        layout[y:y + 5, x:x + 8] = CAR
    if poles:
        x = rng.integers(2, 60)
        layout[8:22, x:x + 2] = POLE
    image = rng.integers(0, 128, (32, 64, 3)).astype(np.uint8)
    return {"image": image, "layout": layout, "meta": {"id": f"s{i:02d}"}, "depth": np.ones((32, 64), np.float32)}


@pytest.fixture(scope="module")
def samples() -> list[dict]:
    rng = np.random.default_rng(0)
    return [scene(i, rng) for i in range(8)]


@pytest.fixture(scope="module")
def bank(samples):
    return build_bank(samples, CLASSES, progress=False)


@pytest.fixture(scope="module")
def target() -> tuple[np.ndarray, np.ndarray]:
    """A frame of the bank's size outside the bank: red >= 128, some ignore pixels, a car of its own."""
    image = np.random.default_rng(1).integers(128, 256, (32, 64, 3)).astype(np.uint8)
    mask = np.full((32, 64), ROAD, np.uint8)
    mask[:12] = SKY
    mask[20:25, 30:38] = CAR
    mask[0:2, 0:4] = 255
    return image, mask


def test_same_seed_same_output_other_seed_other_output(bank, target):
    image, mask = target
    before = image.copy(), mask.copy()
    a, b = CopyPaste(bank, max_objects=4, seed=3), CopyPaste(bank, max_objects=4, seed=3)
    for _ in range(3):  # the same sequence of draws from the same constructor seed
        out_a, out_b = a(image=image, mask=mask), b(image=image, mask=mask)
        np.testing.assert_array_equal(out_a["image"], out_b["image"])
        np.testing.assert_array_equal(out_a["mask"], out_b["mask"])
    one = a(image=image, mask=mask, random_state=5)
    again = b(image=image, mask=mask, random_state=np.random.default_rng(5))
    np.testing.assert_array_equal(one["image"], again["image"])
    np.testing.assert_array_equal(one["mask"], again["mask"])
    other = a(image=image, mask=mask, random_state=6)
    assert not np.array_equal(one["mask"], other["mask"]) and not np.array_equal(one["image"], other["image"])
    # per-call seeds leave the transform's own stream where it was
    np.testing.assert_array_equal(a(image=image, mask=mask)["mask"], b(image=image, mask=mask)["mask"])
    np.testing.assert_array_equal(image, before[0])  # inputs untouched
    np.testing.assert_array_equal(mask, before[1])
    assert one["image"].dtype == np.uint8 and one["image"].shape == image.shape
    assert one["mask"].dtype == mask.dtype and one["mask"].shape == mask.shape


@pytest.mark.parametrize("options", [{}, {"position": "donor", "flip": False}, {"position": "class", "scale": (0.1, 2.0)},
                                     {"choice": "uniform", "max_objects": 8}])
def test_pasted_pixels_are_their_bank_segments_pixels(bank, target, options):
    image, mask = target
    transform = CopyPaste(bank, **{"max_objects": 4, **options})
    changed_total = 0
    for seed in range(6):
        out = transform(image=image, mask=mask, random_state=seed)
        pasted = transform.get_applied_params()["pasted"]
        assert pasted and all(int(bank.seg_class[p["segment"]]) == p["class_index"] for p in pasted)
        pixels_of = {c: {tuple(v) for p in pasted if p["class_index"] == c
                         for v in bank.segment_pixels(p["segment"]).tolist()} for c in range(len(NAMES))}
        mask_changed = out["mask"] != mask
        image_changed = (out["image"] != image).any(-1)
        changed_total += int(mask_changed.sum())
        # every pixel whose label changed got a pixel of a pasted bank segment of its new class
        for (y, x) in zip(*np.nonzero(mask_changed | image_changed)):
            assert tuple(out["image"][y, x].tolist()) in pixels_of[int(out["mask"][y, x])], (seed, y, x)
        assert (out["image"][image_changed][:, 0] < 128).all()  # only bank pixels were written
        assert image_changed[mask_changed].all()  # a changed label always comes with its pixels
    assert changed_total > 0


@pytest.mark.parametrize(("classes", "allowed"), [(["pole"], {POLE}), ([CAR], {CAR}), (["car", POLE], {CAR, POLE}),
                                                  ("auto", {CAR, POLE}), (None, {CAR, POLE})])
def test_only_requested_classes_are_pasted(bank, target, classes, allowed):
    image, mask = target
    transform = CopyPaste(bank, classes=classes, max_objects=3)
    seen = set()
    for seed in range(8):
        out = transform(image=image, mask=mask, random_state=seed)
        seen |= set(np.unique(out["mask"][out["mask"] != mask]).tolist())
        seen |= {p["class_index"] for p in transform.get_applied_params()["pasted"]}
    assert seen == allowed


def test_inside_albumentations_compose(bank, target):
    image, mask = target
    pipeline = A.Compose([CopyPaste(bank, max_objects=4), A.HorizontalFlip(p=1.0)], seed=7)
    out = pipeline(image=image, mask=mask)
    alone = CopyPaste(bank, max_objects=4, seed=7)(image=image, mask=mask)  # Compose(seed=7) seeds its steps
    np.testing.assert_array_equal(out["image"], alone["image"][:, ::-1])
    np.testing.assert_array_equal(out["mask"], alone["mask"][:, ::-1])
    assert not np.array_equal(alone["mask"], mask)
    again = A.Compose([CopyPaste(bank, max_objects=4), A.HorizontalFlip(p=1.0)], seed=7)(image=image, mask=mask)
    np.testing.assert_array_equal(again["image"], out["image"])
    with pytest.raises(ValueError, match="only image and mask.*depth"):
        A.Compose([CopyPaste(bank)], additional_targets={"depth": "mask"})
    with pytest.raises(ValueError, match="only image and mask.*masks"):
        CopyPaste(bank)(image=image, mask=mask, masks=[mask])


def test_dataset_is_seeded_by_seed_index_and_epoch(bank, samples):
    data = CopyPasteDataset(samples, CopyPaste(bank, max_objects=3), seed=0)
    first, third = data[0], data[2]
    assert set(first) == {"image", "layout", "meta"} and first["meta"] == samples[0]["meta"]  # depth dropped
    np.testing.assert_array_equal(data[2]["image"], third["image"])  # order of access does not matter
    np.testing.assert_array_equal(data[0]["layout"], first["layout"])
    assert not np.array_equal(first["layout"], samples[0]["layout"])
    other_seed = CopyPasteDataset(samples, CopyPaste(bank, max_objects=3), seed=1)[0]
    assert not np.array_equal(other_seed["image"], first["image"])
    data.set_epoch(1)
    assert not np.array_equal(data[0]["image"], first["image"])
    data.set_epoch(0)
    pairs = CopyPasteDataset([(s["image"], s["layout"]) for s in samples], CopyPaste(bank, max_objects=3), seed=0)
    image, layout = pairs[0]
    np.testing.assert_array_equal(image, first["image"])
    np.testing.assert_array_equal(layout, first["layout"])
    copied = pickle.loads(pickle.dumps(data))  # as DataLoader workers get it (spawn)
    np.testing.assert_array_equal(copied[2]["image"], third["image"])
    batch = next(iter(DataLoader(data, batch_size=4)))
    assert tuple(batch["image"].shape) == (4, 32, 64, 3) and tuple(batch["layout"].shape) == (4, 32, 64)
    np.testing.assert_array_equal(batch["layout"][2].numpy(), third["layout"])
    composed = CopyPasteDataset(samples, A.Compose([CopyPaste(bank), A.HorizontalFlip()]), seed=0)
    np.testing.assert_array_equal(composed[1]["image"], composed[1]["image"])
    with pytest.raises(ValueError, match="transform must be"):
        CopyPasteDataset(samples, lambda image, mask: {"image": image, "mask": mask})


def test_a_saved_bank_loads_by_path(bank, target, tmp_path):
    image, mask = target
    path = bank.save(tmp_path / "bank.npz")
    from_file = CopyPaste(str(path), seed=2)(image=image, mask=mask)
    in_memory = CopyPaste(bank, seed=2)(image=image, mask=mask)
    np.testing.assert_array_equal(from_file["image"], in_memory["image"])
    with pytest.raises(BankError, match="missing.npz"):
        CopyPaste(tmp_path / "missing.npz")


@pytest.mark.parametrize(("options", "message"), [
    ({"max_objects": 0}, "max_objects"), ({"max_objects": 2.5}, "max_objects"), ({"max_objects": True}, "max_objects"),
    ({"choice": "often"}, "choice must be one of inverse_frequency, uniform"),
    ({"position": "left"}, "position must be one of uniform, class, donor"),
    ({"scale": (0.0, 1.0)}, "scale"), ({"scale": (2.0, 1.0)}, "scale"), ({"scale": "big"}, "scale"),
    ({"flip": "yes"}, "flip"), ({"p": 2.0}, "p must"),
    ({"classes": ["truck"]}, "classes: 'truck' is not a class"), ({"classes": [7]}, "classes: 7 is not a class"),
    ({"classes": ["road", "car"]}, r"classes: \['road'\] are region classes"),
    ({"classes": "cars"}, "classes must be None, 'auto' or"), ({"classes": []}, "classes must be None"),
])
def test_bad_options_are_refused_naming_the_option(bank, options, message):
    with pytest.raises(ValueError, match=f"CopyPaste: {message}"):
        CopyPaste(bank, **options)


def test_a_class_without_objects_and_bad_inputs_are_refused(target):
    rng = np.random.default_rng(2)
    no_poles = build_bank([scene(i, rng, poles=False) for i in range(4)], CLASSES, progress=False)
    with pytest.raises(ValueError, match=r"classes: no pasteable object of \['pole'\]"):
        CopyPaste(no_poles, classes=["pole"])
    transform = CopyPaste(no_poles)
    image, mask = target
    with pytest.raises(ValueError, match="image 48x64 and mask 48x64 must both be 32x64"):
        transform(image=np.zeros((48, 64, 3), np.uint8), mask=np.zeros((48, 64), np.int64))
    with pytest.raises(ValueError, match="image must be a uint8 HxWx3"):
        transform(image=image.astype(np.float32), mask=mask)
    with pytest.raises(ValueError, match="mask must be an HxW integer"):
        transform(image=image, mask=mask[..., None])
    bad = mask.copy()
    bad[5, 5] = 7
    with pytest.raises(ValueError, match=r"labels \[7\] outside 0..3"):
        transform(image=image, mask=bad)
    with pytest.raises(ValueError, match="random_state must be"):
        transform(image=image, mask=mask, random_state="seven")


def test_readme_example_runs_as_written(samples, tmp_path, monkeypatch):
    text = README.read_text()
    section = text[text.index("## Real pixels in your own training loop"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace = {"train_samples": samples}
    exec(compile(code, "docs/python.md", "exec"), namespace)  # noqa: S102  (the documented example, as written)
    assert namespace["out"]["image"].shape == (32, 64, 3) and len(namespace["data"]) == len(samples)


def test_online_copy_paste_on_a_loader_sample(bank, target):
    """`OnlineCopyPaste` (the loader's Source.transform of `seg.online_copy_paste`): sample dicts in
    and out, the stream's generator decides, depth becomes unknown (0) where objects were pasted."""
    from synthdata.texturing.copy_paste_transform import OnlineCopyPaste

    image, mask = target
    sample = {"image": image, "layout": mask.astype(np.uint8), "depth": np.full(mask.shape, 7.0, np.float32),
              "meta": {"id": "t"}}
    online = OnlineCopyPaste(CopyPaste(bank, max_objects=3, classes=["car", "pole"], p=1.0))
    a = online(dict(sample), np.random.default_rng(5))
    b = online(dict(sample), np.random.default_rng(5))
    assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["layout"], b["layout"])
    assert a["layout"].dtype == np.uint8 and a["meta"] == sample["meta"]
    changed = a["layout"] != sample["layout"]
    assert changed.any() and set(np.unique(a["layout"][changed])) <= {CAR, POLE}
    assert (a["depth"][changed] == 0).all() and (a["depth"][~changed] == 7.0).all()
    never = OnlineCopyPaste(CopyPaste(bank, max_objects=3, p=0.0))(dict(sample), np.random.default_rng(5))
    assert np.array_equal(never["layout"], sample["layout"]) and np.array_equal(never["image"], image)
    assert pickle.loads(pickle.dumps(online)).transform.max_objects == 3  # DataLoader workers get a copy
