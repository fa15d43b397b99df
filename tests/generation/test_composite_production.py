"""`stages.image.arch=composite` in production and class-aware copy-paste: shards whose pixels
come from bank segments of the right class (checked against the real source images), identical
for 1 and 2 processes and after a kill, the bank built once in RUN_DIR/bank, nothing to train,
bad banks refused; copy-paste class choice, scale jitter, flips and placement."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from PIL import Image
from scipy import ndimage

from synthdata.core.recipe import CompositeConfig, DataConfig
from synthdata.core.seeding import numpy_rng
from synthdata.data.readers import make_reader
from synthdata.data.shards import read_manifest, sha256_file
from synthdata.texturing.bank_building import build_bank
from synthdata.texturing.composite import IGNORE_FILL
from synthdata.texturing.copy_paste import ObjectPool, paste_objects
from synthdata.texturing.pipeline import CompositePipeline, bank_path, paste_owner
from synthdata.texturing.segment_bank import BankError, load_bank

H, W = 32, 64
EIGHT = np.ones((3, 3), int)
SPLITS = "data.split_sizes={train: 16, val: 4, test: 2}"
COMPOSITE = [
    f"data.height={H}", f"data.width={W}", SPLITS, "stages.image.arch=composite",
    "produce.layouts=real", "produce.copy_paste=3", "produce.copy_paste_scale=[0.5, 1.5]",
    "produce.num_samples=12", "produce.shard_size=4", "produce.batch_size=3", "produce.encode_workers=1",
    "produce.mixed_precision='no'",
]
PRODUCE_FILE = Path(__file__).resolve().parents[2] / "synthdata" / "produce.py"


def produce(run_dir: Path, *extra: str) -> int:
    from synthdata.produce import main

    return main([f"run_dir={run_dir}", *COMPOSITE, *extra])


def samples_of(out: Path) -> list[dict]:
    """Samples with `image` (H, W, 3) uint8, `layout` (H, W) int64 and `meta`."""
    urls = [str(p) for p in sorted(out.glob("*.tar"))]
    return [{"image": np.asarray(Image.open(io.BytesIO(s["image.png"]))),
             "layout": np.asarray(Image.open(io.BytesIO(s["layout.png"]))).astype(np.int64),
             "meta": json.loads(s["json"])} for s in wds.WebDataset(urls, shardshuffle=False)]


def hashes(out: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(out.glob("*.tar"))}


def _colours(pixels: np.ndarray) -> np.ndarray:
    p = pixels.reshape(-1, 3).astype(np.int64)
    return (p[:, 0] << 16) | (p[:, 1] << 8) | p[:, 2]


@pytest.fixture(scope="module")
def produced(tmp_path_factory) -> tuple[Path, Path]:
    """One composite + copy-paste production on real toy layouts, with nothing trained."""
    run_dir = tmp_path_factory.mktemp("composite_run")
    assert produce(run_dir, f"produce.out={run_dir / 'shards'}") == 0
    return run_dir, run_dir / "shards"


@pytest.fixture(scope="module")
def train() -> dict[str, dict]:
    cfg = DataConfig(reader="toy", height=H, width=W, split_sizes={"train": 16, "val": 4, "test": 2})
    return {s["meta"]["id"]: s for s in make_reader(cfg, "train")}


def test_every_pixel_comes_from_a_listed_bank_segment_of_its_class(produced, train):
    run_dir, out = produced
    bank = load_bank(bank_path(run_dir))
    samples = samples_of(out)
    assert len(samples) == 12 and read_manifest(out)["num_samples"] == 12
    pasted_pixels = 0
    for sample in samples:
        meta, layout, image = sample["meta"], sample["layout"], sample["image"]
        assert meta["texturing"] == "composite" and meta["bank"] == "segment_bank.npz"
        assert meta["layout_source"] == "real" and meta["depth_from"] == "bank"
        # pasted objects: their visible pixels are their own bank segment's, warped exactly
        pasted = meta.get("pasted", [])
        masks = [bank.mask(p["segment"])[:, ::-1] if p["flip"] else bank.mask(p["segment"]) for p in pasted]
        owner = paste_owner(pasted, layout.shape, masks)
        for i, p in enumerate(pasted):
            s = p["segment"]
            assert int(bank.seg_class[s]) == p["class_index"] and bank.classes[p["class_index"]] == p["class"]
            assert (p["source"], p["source_component"]) == (bank.source_of(s), int(bank.seg_component[s]))
            rgb, _ = bank.filled(s)
            rgb = rgb[:, ::-1] if p["flip"] else rgb
            y0, x0, y1, x1 = p["box"]
            ys = (2 * np.arange(y1 - y0) + 1) * rgb.shape[0] // (2 * (y1 - y0))
            xs = (2 * np.arange(x1 - x0) + 1) * rgb.shape[1] // (2 * (x1 - x0))
            warped = rgb[ys[:, None], xs[None, :]]
            mine = (owner == i) & (layout == p["class_index"])
            assert int(mine.sum()) == p["pixels"]
            yy, xx = np.nonzero(mine)
            np.testing.assert_array_equal(image[yy, xx], warped[yy - y0, xx - x0])
            # checked against the donor image itself, not the bank's copy
            source = train[p["source"]]
            labels, _ = ndimage.label(source["layout"] == p["class_index"], structure=EIGHT)
            real = source["image"][labels == p["source_component"] + 1]
            assert np.isin(_colours(image[mine]), _colours(real)).all()
            pasted_pixels += int(mine.sum())
        # every other labelled pixel: a real pixel of the segment listed for its component
        covered = owner >= 0
        for entry in meta["sources"]:
            c, s = entry["class_index"], entry["segment"]
            assert int(bank.seg_class[s]) == c and bank.source_of(s) == entry["source"]
            labels, _ = ndimage.label(layout == c, structure=EIGHT)
            y0, x0, y1, x1 = entry["box"]
            ids = [v for v in np.unique(labels[y0:y1, x0:x1]) if v]
            component = next(labels == v for v in ids if (labels == v).sum() == entry["area"])
            free = component & (owner < 0)
            source = train[entry["source"]]
            src_labels, _ = ndimage.label(source["layout"] == c, structure=EIGHT)
            real = source["image"][src_labels == entry["source_component"] + 1]
            assert np.isin(_colours(image[free]), _colours(real)).all(), entry
            covered |= component
        labelled = layout != 255
        assert covered[labelled].all()
        assert (image[~labelled] == IGNORE_FILL).all()
    assert pasted_pixels > 0  # the check above did check pasted objects


def test_two_processes_write_the_same_bytes_as_one(produced, tmp_path, launch_two_processes):
    run_dir, one = produced
    fresh = tmp_path / "run"  # the two processes build its bank: main builds, the other waits
    result = launch_two_processes("synthdata/produce.py", f"run_dir={fresh}", *COMPOSITE,
                                  f"produce.out={fresh / 'shards'}")
    assert "2 processes" in result.stdout
    assert (fresh / "bank" / "segment_bank.npz").is_file()
    # the same run dir for one process (the json names the run dir)
    assert produce(fresh, f"produce.out={fresh / 'one'}") == 0
    two = hashes(fresh / "shards")
    assert len(two) == 3 and two == hashes(fresh / "one")
    assert sha256_file(fresh / "bank" / "segment_bank.npz") == sha256_file(bank_path(run_dir))


def test_a_killed_production_resumes_to_the_same_bytes(produced, tmp_path):
    run_dir, _ = produced
    out = tmp_path / "killed"
    many = ["produce.num_samples=64"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(PRODUCE_FILE), f"run_dir={run_dir}", *COMPOSITE, *many,
                             f"produce.out={out}"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not list(out.glob("*.tar")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists()  # killed before the end
    assert produce(run_dir, *many, f"produce.out={out}") == 0
    assert produce(run_dir, *many, f"produce.out={tmp_path / 'fresh'}") == 0
    resumed = hashes(out)
    assert len(resumed) == 16 and resumed == hashes(tmp_path / "fresh")


def test_nothing_to_train_builds_the_bank_and_bad_banks_are_refused(produced, tmp_path, capsys):
    from synthdata.train import main as train

    run_dir, _ = produced
    other = tmp_path / "run"
    assert train([f"run_dir={other}", "stage=image", *COMPOSITE[:4]]) == 0
    said = capsys.readouterr().out
    assert "no weights to train" in said and "segment bank" in said and bank_path(other).is_file()
    assert not (other / "checkpoints").exists()
    # the run dir's bank, built for other settings or another resolution: one clear line, exit 2
    assert produce(run_dir, f"produce.out={tmp_path / 'x'}", "stages.image.composite.min_pixels=40") == 2
    err = capsys.readouterr().err
    assert "segment_bank.npz" in err and "min_pixels" in err
    assert produce(run_dir, f"produce.out={tmp_path / 'y'}", "data.height=16", "data.width=32") == 2
    err = capsys.readouterr().err
    assert "segment_bank.npz" in err and "resolution" in err
    # generated layouts still need the layout stage
    assert produce(other, f"produce.out={tmp_path / 'z'}", "produce.layouts=generated") == 2
    assert "stage=layout" in capsys.readouterr().err


def test_a_class_absent_from_the_bank_is_an_error_or_grey(train):
    """Documented choice: stages.image.composite.missing=error (default) stops naming the class
    and the bank; missing=fill paints it neutral grey and lists it in the meta."""
    classes = make_reader(DataConfig(reader="toy", height=H, width=W), "train").classes
    person = classes.names.index("person")
    without = [dict(s, layout=np.where(s["layout"] == person, 255, s["layout"])) for s in train.values()]
    bank = build_bank(without, classes, progress=False)
    assert bank.counts()["person"] == 0
    layout = np.zeros((1, H, W), np.int64)
    layout[0, 10:20, 10:14] = person
    strict = CompositePipeline(bank, CompositeConfig(), classes=classes, height=H, width=W, depth_scale=0.001)
    with pytest.raises(BankError, match="'person'.*no segment"):
        strict.from_layouts(layout, [0])
    grey = CompositePipeline(bank, CompositeConfig(missing="fill"), classes=classes, height=H, width=W,
                             depth_scale=0.001).from_layouts(layout, [0])
    assert grey["meta"][0]["missing"] == ["person"]
    assert (grey["image"][0, :, 10:20, 10:14] * 255).round().eq(128).all()


# --------------------------------------------------------------------------------------------
# Copy-paste: class choice, scale jitter, flips, placement
# --------------------------------------------------------------------------------------------


def constructed_pool() -> ObjectPool:
    """Class 1: 3 big objects per layout (frequent); class 2: one small object at the top
    (rare, 1/8 of class 1's pixels); class 0 the background."""
    layouts = []
    for i in range(4):
        layout = np.zeros((H, W), np.int64)
        for j in range(3):
            layout[16:24, 4 + 20 * j: 12 + 20 * j] = 1  # 3 x 64 pixels
        layout[2:6, 4 + 8 * i: 10 + 8 * i] = 2  # 24 pixels, near the top
        layouts.append((layout, f"l{i}"))
    return ObjectPool.from_layouts(layouts, ignore_index=255, max_object_fraction=0.1, min_object_pixels=4)


def test_copy_paste_picks_classes_by_inverse_frequency():
    pool = constructed_pool()
    assert sorted(pool.by_class) == [1, 2]  # the background is too large to move
    ratio = pool.frequency[1] / pool.frequency[2]
    assert ratio == pytest.approx(8.0)
    target = np.zeros((H, W), np.int64)
    counts: Counter = Counter()
    uniform: Counter = Counter()
    for seed in range(300):
        _, recs = paste_objects(target, pool, numpy_rng(seed), num_objects=1, scale=(1, 1))
        counts.update(r["class_index"] for r in recs)
        _, recs = paste_objects(target, pool, numpy_rng(seed), num_objects=1, scale=(1, 1), choice="uniform")
        uniform.update(r["class_index"] for r in recs)
    # inverse frequency: class 2 is 8x as likely as class 1 (p = 8/9)
    assert 0.83 < counts[2] / 300 < 0.95
    # uniform over objects: 12 of class 1, 4 of class 2 (p = 1/4)
    assert 0.17 < uniform[2] / 300 < 0.33
    _, recs = paste_objects(target, pool, numpy_rng(0), num_objects=5, classes=[1])
    assert recs and {r["class_index"] for r in recs} == {1}


def test_copy_paste_scale_jitter_flips_and_placement():
    pool = constructed_pool()
    target = np.zeros((H, W), np.int64)
    scales, flips = [], []
    for seed in range(200):
        out, recs = paste_objects(target, pool, numpy_rng(seed), num_objects=1, scale=(0.1, 2.0), classes=[1])
        for r in recs:
            y0, x0, y1, x1 = r["box"]
            assert (y1 - y0, x1 - x0) == (max(1, round(8 * r["scale"])), max(1, round(8 * r["scale"])))
            # the pasted pixels are the scaled mask (clipped to the frame)
            assert (out == 1).sum() == ((max(0, min(H, y1) - max(0, y0))) * (max(0, min(W, x1) - max(0, x0))))
            scales.append(r["scale"])
            flips.append(r["flip"])
    assert 0.1 <= min(scales) < 0.3 and 1.8 < max(scales) <= 2.0  # large scale jitter
    assert 0.35 < np.mean(flips) < 0.65
    _, recs = paste_objects(target, pool, numpy_rng(1), num_objects=20, scale=(1, 1), flip=False)
    assert recs and not any(r["flip"] for r in recs)
    # vertical-position prior: class 2 sits at rows 2..6 in every real layout
    tops = []
    for seed in range(50):
        _, recs = paste_objects(target, pool, numpy_rng(seed), num_objects=1, scale=(1, 1), classes=[2],
                                position="class")
        tops += [r["box"][0] for r in recs]
    assert tops and all(1 <= t <= 3 for t in tops)
    _, recs = paste_objects(target, pool, numpy_rng(3), num_objects=1, scale=(1, 1), classes=[1], position="donor")
    assert recs and recs[0]["box"][0] == 16  # where it was in its own layout
    with pytest.raises(ValueError, match="copy_paste_position"):
        paste_objects(target, pool, numpy_rng(0), num_objects=1, position="sky")
    with pytest.raises(ValueError, match="copy_paste_scale"):
        paste_objects(target, pool, numpy_rng(0), num_objects=1, scale=(2.0, 1.0))


def test_generated_layouts_with_composite_need_no_image_stage(tmp_path):
    """Layout GAN + depth stage (random weights) + composite on a dataset without depth: depth
    comes from the depth stage, images from the bank; no image checkpoint exists."""
    import cv2

    from synthdata.core.checkpoint import portable_checkpoint, save_atomic
    from synthdata.core.contract import ClassInfo
    from synthdata.core.palette import default_palette
    from synthdata.core.recipe_loading import load_recipe, recipe_to_dict
    from synthdata.generation import stages

    data = tmp_path / "data" / "train"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    for i in range(3):
        layout = np.zeros((H, W), np.uint8)
        layout[: H // 2] = 1
        layout[20:26, 8 * i: 8 * i + 10] = 2 + i % 2
        cv2.imwrite(str(data / "masks" / f"s{i}.png"), layout)
        rgb = np.random.default_rng(i).integers(0, 256, (H, W, 3), dtype=np.uint8)
        cv2.imwrite(str(data / "images" / f"s{i}.png"), rgb)
    tiny = [f"data.height={H}", f"data.width={W}", "data.classes=[a, b, c, d]", "data.reader=folder",
            f"data.root={tmp_path / 'data'}", "stages.layout.ngf=8", "stages.layout.ndf=8", "stages.layout.z_dim=16",
            "stages.depth.ngf=8", "stages.depth.ndf=8", "stages.image.arch=composite", "produce.num_samples=6",
            "produce.shard_size=3", "produce.batch_size=3", "produce.encode_workers=1",
            "produce.mixed_precision='no'", "stages.image.composite.missing=fill"]
    recipe = load_recipe("toy", tiny)
    classes = ClassInfo(tuple("abcd"), default_palette(4))
    for stage in ("layout", "depth"):
        spec = stages.stage_spec(stage, recipe, num_classes=4, use_depth=True, max_depth=50.0)
        model = spec.build_generator()
        save_atomic(portable_checkpoint(kind=f"generator-{stage}", model=model.state_dict(), step=1,
                                        recipe=recipe_to_dict(recipe), classes=classes, ema=model.state_dict(),
                                        arch=spec.to_dict()), tmp_path / "checkpoints" / stage / "latest.pt")
    from synthdata.produce import main

    assert main([f"run_dir={tmp_path}", *tiny]) == 0
    samples = samples_of(tmp_path / "shards")
    assert len(samples) == 6 and not (tmp_path / "checkpoints" / "image").exists()
    bank = load_bank(bank_path(tmp_path))
    assert not bank.has_depth
    for sample in samples:
        meta = sample["meta"]
        assert meta["texturing"] == "composite" and meta["depth_from"] == "depth stage"
        assert meta["layout_source"] == "generated"
        for entry in meta["sources"]:
            if entry["segment"] is not None:
                assert int(bank.seg_class[entry["segment"]]) == entry["class_index"]
    raw = next(iter(wds.WebDataset(str(tmp_path / "shards" / "synth-000000.tar"), shardshuffle=False)))
    assert "depth.png" in raw


def test_inspect_reads_composite_shards(produced, tmp_path, capsys):
    from synthdata.inspection import main as inspect

    _, out = produced
    sheet = tmp_path / "sheet.png"
    assert inspect([str(out), "n=4", f"out={sheet}"]) == 0
    said = capsys.readouterr().out
    assert "sources: {'synthetic (composite)': 12}" in said and "0 problems" in said
    assert np.asarray(Image.open(sheet)).shape[0] >= 4 * H


def test_bench_composite_produce_tool_runs(monkeypatch, capsys, glibc_allocator):
    import runpy

    tool = Path(__file__).resolve().parents[2] / "tools" / "bench_composite_produce.py"
    monkeypatch.setattr(sys, "argv", [str(tool), "recipe=toy", f"data.height={H}", f"data.width={W}",
                                      "stages.layout.ngf=8", "stages.depth.ngf=8", "stages.image.ngf=8",
                                      "num_samples=4", "batch_size=2", "bank=6", "precisions=no"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(tool), run_name="__main__")
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for variant in ("spade fp32", "composite, generated layouts", "composite, real layouts + copy-paste 3"):
        assert f"| {H}x{W} | {variant} | " in out, out


def test_the_bank_obeys_the_low_data_subset(tmp_path, capsys):
    from synthdata.core.recipe_loading import load_recipe
    from synthdata.texturing.pipeline import prepare_bank

    recipe = load_recipe("toy", [*COMPOSITE[:4], "data.subset=0.25"])
    bank = prepare_bank(recipe, tmp_path, progress=False, log=None)
    reader = make_reader(recipe.data, recipe.data.train_split)
    assert len(reader) == 4 and bank.source_ids == sorted(reader.item_id(i) for i in range(4))
    # another subset of the same size: the bank of the run dir is refused, naming it
    ids = tmp_path / "ids.txt"
    everything = make_reader(load_recipe("toy", COMPOSITE[:4]).data, "train")
    ids.write_text("\n".join(everything.item_id(i) for i in range(1, 16, 4)))
    other = load_recipe("toy", [*COMPOSITE[:4], f"data.subset={ids}"])
    with pytest.raises(BankError, match="segment_bank.npz was built from other source images"):
        prepare_bank(other, tmp_path, progress=False, log=None)


def test_leave_one_out_textures_real_layouts_from_other_images(produced, tmp_path):
    """`stages.image.composite.leave_one_out`: a real layout's regions come from other images'
    segments (a class only its own image shows excepted); by default retrieval mostly finds the
    layout's own segments, which makes the composite nearly its real image."""
    def own_share(samples, bank):
        own = other_possible = 0
        for sample in samples:
            layout_id = sample["meta"]["layout_id"]
            for entry in sample["meta"]["sources"]:
                others = {bank.source_of(s) for s in bank.class_segments(entry["class_index"])} - {layout_id}
                if entry["source"] == layout_id:
                    own += 1
                    other_possible += bool(others)
        return own, other_possible

    run_dir, out = produced
    own, _ = own_share(samples_of(out), load_bank(bank_path(run_dir)))
    assert own > 0  # the default: own segments are found
    loo = tmp_path / "loo"
    assert produce(loo, f"produce.out={loo / 'shards'}", "stages.image.composite.leave_one_out=true") == 0
    samples = samples_of(loo / "shards")
    assert len(samples) == 12 and all(s["meta"]["layout_source"] == "real" for s in samples)
    own, other_possible = own_share(samples, load_bank(bank_path(loo)))
    assert other_possible == 0  # an own segment only where no other image shows the class
    # tools/composite_sources.py reports the same, as shares of components and of their area
    import runpy

    tool = runpy.run_path(str(Path(__file__).resolve().parents[2] / "tools" / "composite_sources.py"))
    default, left_out = tool["own_shares"](str(out), 12), tool["own_shares"](str(loo / "shards"), 12)
    assert default["samples"] == left_out["samples"] == 12
    assert default["area"] > 0.3 and left_out["components"] == pytest.approx(own / sum(
        len(s["meta"]["sources"]) for s in samples))


def test_composite_sources_tool_names_bad_input_in_one_line(produced, tmp_path, capsys):
    import runpy

    main = runpy.run_path(str(Path(__file__).resolve().parents[2] / "tools" / "composite_sources.py"))["main"]
    _, out = produced
    assert main([str(out), "count=4"]) == 0 and "4 real-layout samples" in capsys.readouterr().out
    for argv, said in (([str(tmp_path / "nowhere")], "not found"), ([str(out), "count=x"], "count=N"),
                       ([], "SHARDS")):
        assert main(argv) == 2
        err = capsys.readouterr()
        assert said in err.err + err.out
