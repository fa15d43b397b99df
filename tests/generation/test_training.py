"""Generator training: each stage optimises, resumes exactly, guards against NaN, keeps a good
checkpoint when the newest is damaged, and rejects bad input with clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from synthdata.core.contract import CheckpointError, ConfigError
from synthdata.core.recipe_loading import load_recipe
from synthdata.core.runtime import resolve_mixed_precision
from synthdata.data.readers.base import READERS, DatasetReader, register_reader
from synthdata.generation import stages
from synthdata.generation.encodings import denormalize_depth, normalize_depth
from synthdata.generation.sampler import stage_checkpoint
from synthdata.generation.training import _diffaugment, train_stage
from synthdata.train import main

REPO = Path(__file__).resolve().parents[2]


class StubStreets(DatasetReader):
    """Sky / road / box scenes with depth, a few lines of numpy (tests must not depend on how
    expensive the real toy world is to render)."""

    default_classes = ("sky", "road", "box")
    needs_root = False
    has_depth = True

    def _items(self):
        return list(range(self.cfg.split_sizes.get(self.split, 8)))

    def _load(self, i):
        rng = np.random.default_rng(i)
        h, w = self.cfg.height, self.cfg.width
        horizon = int(rng.integers(h // 4, h // 2))
        layout = np.zeros((h, w), np.uint8)
        layout[horizon:] = 1
        x0, y0 = int(rng.integers(0, w - w // 4)), int(rng.integers(horizon, h - h // 4))
        layout[y0 : y0 + h // 4, x0 : x0 + w // 4] = 2
        rows = np.arange(h, dtype=np.float32)[:, None].repeat(w, 1)
        depth = np.where(rows > horizon, 50.0 / np.maximum(rows - horizon, 1), 0).astype(np.float32)
        depth[layout == 2] = 5.0
        palette = np.array([[120, 170, 250], [90, 90, 90], [200, 40, 40]], np.uint8)
        image = palette[layout] + rng.integers(0, 20, (h, w, 3)).astype(np.uint8)
        return {"image": image, "layout": layout, "depth": depth, "meta": {"id": f"stub{i}"}}


if "stub-streets" not in READERS:
    register_reader("stub-streets")(StubStreets)

TINY = [
    "data.reader=stub-streets", "data.height=32", "data.width=64", "data.split_sizes={train: 16, val: 8}",
    "train.batch_size=2", "train.mixed_precision=no", "train.checkpoint_every=2", "train.sample_every=2",
    "train.log_every=1", "stages.layout.ngf=8", "stages.layout.ndf=8", "stages.layout.z_dim=16",
    "stages.depth.ngf=8", "stages.depth.ndf=8", "stages.depth.z_dim=8",
    "stages.image.ngf=8", "stages.image.ndf=8", "stages.image.z_dim=8",
]


def run(tmp_path: Path, stage: str, steps: int, *extra: str, run_dir: str = "run") -> dict:
    recipe = load_recipe("toy", TINY + [f"train.steps={steps}", *extra])
    return train_stage(recipe, stage=stage, run_dir=tmp_path / run_dir)


@pytest.mark.parametrize("stage", stages.STAGES)
def test_stage_steps_change_weights_and_keep_losses_finite(tmp_path, stage, monkeypatch):
    built = {}
    cls = stages.SPECS[stage]
    real_build = cls.build_generator

    def capture(spec):
        G = real_build(spec)
        built["init"] = {k: v.clone() for k, v in G.state_dict().items()}
        return G

    monkeypatch.setattr(cls, "build_generator", capture)
    summary = run(tmp_path, stage, 2)
    assert summary["step"] == 2 and summary["losses"]
    assert all(np.isfinite(v) for v in summary["losses"].values()), summary["losses"]
    ckpt, _ = stage_checkpoint(tmp_path / "run", stage)
    assert ckpt["step"] == 2 and ckpt["arch"]["stage"] == stage
    changed = [k for k, v in ckpt["model"].items() if v.is_floating_point() and not torch.equal(v, built["init"][k])]
    assert changed, "two optimisation steps left every generator weight unchanged"
    assert (tmp_path / "run" / "samples" / stage / "step-000002.png").is_file()
    assert (tmp_path / "run" / "recipe.yaml").is_file()


def assert_same_depth_run(tmp_path: Path, summary: dict, run_dir: str, reference: dict, reference_dir: str) -> None:
    """The two depth runs' last losses and generator weights agree."""
    for key, value in reference["losses"].items():
        assert summary["losses"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    a, _ = stage_checkpoint(tmp_path / run_dir, "depth")
    b, _ = stage_checkpoint(tmp_path / reference_dir, "depth")
    for k in b["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k])


def test_resume_repeats_the_uninterrupted_run(tmp_path):
    run(tmp_path, "depth", 2, run_dir="split")
    resumed = run(tmp_path, "depth", 4, run_dir="split")
    straight = run(tmp_path, "depth", 4, run_dir="straight")
    assert resumed["steps"] == 2 and resumed["step"] == 4
    assert_same_depth_run(tmp_path, resumed, "split", straight, "straight")
    again = run(tmp_path, "depth", 4, run_dir="split")
    assert again["steps"] == 0  # already at train.steps: nothing to do


def test_init_from_continues_a_shorter_run_to_the_run_from_scratch(tmp_path):
    run(tmp_path, "depth", 2, run_dir="short")
    continued = run(tmp_path, "depth", 4, f"train.init_from={tmp_path / 'short'}", run_dir="long")
    straight = run(tmp_path, "depth", 4, run_dir="straight")
    assert continued["steps"] == 2 and continued["step"] == 4
    assert_same_depth_run(tmp_path, continued, "long", straight, "straight")
    assert stage_checkpoint(tmp_path / "short", "depth")[0]["step"] == 2  # the donor is left as it was
    assert not list((tmp_path / "long" / "checkpoints").glob(".*"))  # no partial copy left
    # a run with its own checkpoint resumes from it and does not read the donor again
    again = run(tmp_path, "depth", 4, f"train.init_from={tmp_path / 'missing'}", run_dir="long")
    assert again["steps"] == 0


@pytest.mark.parametrize("donor, extra, message", [
    (("train.steps=2",), ("stages.depth.lr_g=0.001",), "stages.depth.lr_g: 0.0002 there, 0.001 here"),
    (("train.steps=4",), (), "at step 4, past train.steps=3"),
    (("train.steps=3", "train.checkpoint_every=2"), ("train.steps=4",), "step 3 is not a multiple"),
    (("train.steps=2",), ("train.minutes=1",), "continue a run by train.steps"),
    (None, (), "no checkpoint of stage 'depth' there"),
])
def test_init_from_refuses_a_donor_that_would_change_the_result(tmp_path, donor, extra, message):
    if donor is not None:
        recipe = load_recipe("toy", TINY + list(donor))
        train_stage(recipe, stage="depth", run_dir=tmp_path / "donor")
    with pytest.raises(ConfigError, match=message) as error:
        run(tmp_path, "depth", 3, f"train.init_from={tmp_path / 'donor'}", *extra, run_dir="run")
    assert str(tmp_path / "donor") in str(error.value)
    assert not (tmp_path / "run" / "checkpoints" / "depth" / "state").exists()


def test_layout_resume_and_gradient_accumulation(tmp_path):
    run(tmp_path, "layout", 2, "train.gradient_accumulation=2", "stages.layout.loss=nonsaturating")
    summary = run(tmp_path, "layout", 3, "train.gradient_accumulation=2", "stages.layout.loss=nonsaturating")
    assert summary["steps"] == 1 and np.isfinite(summary["losses"]["d"])


def test_the_training_loop_gives_the_lazy_penalty_its_step(tmp_path):
    """gp_every=4: the penalty runs on steps 4, 8, ... (1-based), so the last step's logged "gp" is
    0 after 3 steps and the penalty after 4 (a loop passing a fixed step would never or always run it)."""
    assert run(tmp_path, "layout", 3, "stages.layout.gp_every=4")["losses"]["gp"] == 0.0
    assert run(tmp_path, "layout", 4, "stages.layout.gp_every=4")["losses"]["gp"] > 0.0


def test_class_conditioned_layout_gan_trains_remembers_real_sets_and_samples_by_seed(tmp_path):
    from synthdata.generation.sampler import load_pipeline

    run(tmp_path, "layout", 2, "stages.layout.class_conditioning=true", "stages.layout.presence_weight=10")
    ckpt, _ = stage_checkpoint(tmp_path / "run", "layout")
    assert ckpt["arch"]["class_conditioning"] is True
    assert int(ckpt["model"]["sets_seen"]) == int(ckpt["ema"]["sets_seen"]) == 4  # 2 steps x batch 2
    seen = {tuple(r) for r in ckpt["ema"]["set_memory"][:4].tolist()}
    pipe = load_pipeline(tmp_path / "run", device="cpu")
    a, b = pipe.layouts_from_seeds([0, 1, 2]), pipe.layouts_from_seeds([2, 1, 0])
    assert a.shape == (3, 32, 64) and torch.equal(a, b.flip(0))
    G, spec = pipe.generator("layout")
    assert {tuple(int(v) for v in r) for r in spec.sampling_condition(G, list(range(8)), "cpu").tolist()} <= seen
    with pytest.raises(ValueError, match="class-conditioned"):
        pipe.layouts_from_z(torch.zeros(2, 16))


def test_class_conditioned_layout_resume_repeats_the_uninterrupted_run(tmp_path):
    keys = ("stages.layout.class_conditioning=true", "stages.layout.presence_weight=10")
    run(tmp_path, "layout", 2, *keys, run_dir="split")
    resumed = run(tmp_path, "layout", 4, *keys, run_dir="split")
    straight = run(tmp_path, "layout", 4, *keys, run_dir="straight")
    for key, value in straight["losses"].items():
        assert resumed["losses"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    a, _ = stage_checkpoint(tmp_path / "split", "layout")
    b, _ = stage_checkpoint(tmp_path / "straight", "layout")
    assert int(a["ema"]["sets_seen"]) == int(b["ema"]["sets_seen"]) == 8
    for k in b["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k])


def test_layout_stage_trains_with_the_local_critic_and_records_it(tmp_path):
    summary = run(tmp_path, "layout", 2, "stages.layout.local_critic=true")
    assert all(np.isfinite(v) for v in summary["losses"].values()) and summary["losses"]["gp"] > 0
    ckpt, _ = stage_checkpoint(tmp_path / "run", "layout")
    assert ckpt["arch"]["local_critic"] is True


def test_hinge_layout_stage_has_no_penalty_and_resumes_to_the_uninterrupted_run(tmp_path):
    """SN-GAN's critic keeps its power-iteration vectors in the checkpoint, so a resumed run equals
    the uninterrupted one; the hinge loss logs no penalty."""
    run(tmp_path, "layout", 2, "stages.layout.loss=hinge", run_dir="split")
    resumed = run(tmp_path, "layout", 4, "stages.layout.loss=hinge", run_dir="split")
    straight = run(tmp_path, "layout", 4, "stages.layout.loss=hinge", run_dir="straight")
    assert "gp" not in straight["losses"] and all(np.isfinite(v) for v in straight["losses"].values())
    for key, value in straight["losses"].items():
        assert resumed["losses"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    a, _ = stage_checkpoint(tmp_path / "split", "layout")
    b, _ = stage_checkpoint(tmp_path / "straight", "layout")
    for k in b["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k])


def test_compiled_generator_trains_the_same_weights_and_saves_plain_checkpoints(tmp_path, monkeypatch):
    """train.compile=true: the generator's training passes run through torch.compile (here its
    `eager` backend, which traces but needs no C++ compiler), with the same losses as without, and
    checkpoints keep the plain module's keys."""
    compiled = []
    real_compile = torch.compile

    def eager_compile(model, **kwargs):
        compiled.append(type(model).__name__)
        return real_compile(model, backend="eager")

    monkeypatch.setattr(torch, "compile", eager_compile)
    plain = run(tmp_path, "image", 2, run_dir="plain")
    fused = run(tmp_path, "image", 2, "train.compile=true", run_dir="compiled")
    assert compiled == ["SPADEGenerator"]
    for key, value in plain["losses"].items():
        assert fused["losses"][key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    a, _ = stage_checkpoint(tmp_path / "plain", "image")
    b, _ = stage_checkpoint(tmp_path / "compiled", "image")
    assert list(a["model"]) == list(b["model"]) and list(a["ema"]) == list(b["ema"])
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-4, atol=1e-5)


def test_checkpoint_for_other_classes_is_refused(tmp_path, capsys):
    run(tmp_path, "layout", 1)
    args = ["stage=layout", f"run_dir={tmp_path / 'run'}", "train.steps=2", "data.classes=[sky, road, car]"]
    assert main(TINY + args) == 2
    assert "trained for classes" in capsys.readouterr().err


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    run(tmp_path, "image", 2)
    real_g_loss = stages.ImageSpec.g_loss

    def nan_loss(*args, **kwargs):
        loss, logs = real_g_loss(*args, **kwargs)
        return loss * float("nan"), dict(logs, g=logs["g"] * float("nan"))

    monkeypatch.setattr(stages.ImageSpec, "g_loss", nan_loss)
    assert main(TINY + ["stage=image", f"run_dir={tmp_path / 'run'}", "train.steps=4"]) == 3
    assert "not finite at step 3" in capsys.readouterr().err
    ckpt, _ = stage_checkpoint(tmp_path / "run", "image")
    assert ckpt["step"] == 2


def test_corrupt_checkpoints_fall_back_to_previous(tmp_path, monkeypatch):
    from synthdata.core.run_dir import CheckpointFolder

    def killed(self):
        raise KeyboardInterrupt("killed after the last checkpoint, before the backups were deleted")

    monkeypatch.setattr(CheckpointFolder, "finish", killed)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "layout", 4)  # checkpoints at steps 2 and 4
    monkeypatch.undo()
    folder = tmp_path / "run" / "checkpoints" / "layout"
    (folder / "latest.pt").write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="previous checkpoint"):
        ckpt, path = stage_checkpoint(tmp_path / "run", "layout")
    assert path.name == "previous.pt" and ckpt["step"] == 2
    # a damaged training state resumes from the previous one
    for f in (folder / "state").glob("model*.safetensors"):
        f.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="resumed from the previous good state"):
        summary = run(tmp_path, "layout", 5)
    assert summary["steps"] == 3  # state.previous was at step 2
    assert not (folder / "previous.pt").exists() and not (folder / "state.previous").exists()  # finished
    (folder / "latest.pt").write_bytes(b"\0" * 10)
    with pytest.raises(CheckpointError, match="corrupt"):
        stage_checkpoint(tmp_path / "run", "layout")


def test_bad_input_errors(tmp_path, capsys):
    base = TINY + [f"run_dir={tmp_path}"]
    assert main(base + ["stage=colour"]) == 2
    assert "Valid stages: layout, depth, image" in capsys.readouterr().err
    assert main(base + ["stage=depth", "data.has_depth=false"]) == 2
    assert "no depth stage" in capsys.readouterr().err
    assert main(base + ["stage=image", "data.has_depth=false"]) == 2
    assert "stages.image.use_depth=false" in capsys.readouterr().err
    assert main(base + ["stage=layout", "stages.layout.arch=gan9000"]) == 2
    assert "'stages.layout.arch' must be one of ['dcgan', 'style'], got 'gan9000'" in capsys.readouterr().err  # at load time
    assert main(base + ["stage=image", "data.height=33"]) == 2
    assert "stages.image" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="fp16 needs a GPU"):
        resolve_mixed_precision("fp16", "cpu")
    assert resolve_mixed_precision(False, "cpu") == "no"


def test_trains_from_real_data_shards(tmp_path):
    from synthdata.export import main as export

    assert export(TINY + ["export.shard_size=8", f"out={tmp_path / 'shards'}"]) == 0
    summary = run(tmp_path, "depth", 2, f"train.shards={tmp_path / 'shards'}")
    ckpt, _ = stage_checkpoint(tmp_path / "run", "depth")
    assert summary["step"] == 2 and ckpt["classes"]["classes"] == ["sky", "road", "box"]
    assert 49 < ckpt["arch"]["max_depth"] < 60  # 1.1 x the stub world's 50 m (1 mm steps in depth.png)


def test_depth_normalisation_round_trip_and_diffaugment_setting():
    depth = torch.tensor([[[[0.0, 0.5, 10.0, 80.0, float("nan")]]]])
    norm, mask = normalize_depth(depth, 80.0)
    assert mask.tolist() == [[[[0, 1, 1, 1, 0]]]] and norm.min() >= -1 and norm.max() <= 1
    back = denormalize_depth(norm, 80.0)
    torch.testing.assert_close(back[mask.bool()], depth[mask.bool()], rtol=1e-5, atol=1e-5)
    assert _diffaugment("auto", 16) and not _diffaugment("auto", 5000) and not _diffaugment("auto", None)
    assert _diffaugment("on", None) and not _diffaugment("off", 16)
    with pytest.raises(ConfigError, match="auto, on or off"):
        _diffaugment("sometimes", 16)


def test_image_stage_without_depth_uses_layout_only(tmp_path):
    run(tmp_path, "image", 1, "data.has_depth=false", "stages.image.use_depth=false")
    ckpt, _ = stage_checkpoint(tmp_path / "run", "image")
    assert ckpt["arch"]["cond_channels"] == 3 and not ckpt["arch"]["use_depth"]


def test_bf16_autocast_trains(tmp_path):
    summary = run(tmp_path, "image", 1, "train.mixed_precision=bf16")
    assert all(np.isfinite(v) for v in summary["losses"].values())


def test_two_process_launch(tmp_path, launch_two_processes):
    """A real 2-process gloo run through `accelerate launch`."""
    from synthdata.data.readers import READERS as readers  # importing registers the built-in readers

    if "toy" not in readers:
        pytest.skip("the toy world reader is not available")
    keys = [*[t for t in TINY if not t.startswith(("data.reader", "data.split_sizes"))],
            "data.split_sizes={train: 8, val: 4, test: 4}"]
    proc = launch_two_processes("synthdata/train.py", "recipe=toy", "stage=layout", f"run_dir={tmp_path}",
                                "train.steps=2", *keys, accelerate=True)
    assert "2 process(es)" in proc.stdout
    ckpt, _ = stage_checkpoint(tmp_path, "layout")
    assert ckpt["step"] == 2
    # both processes continue the run in another run dir (train.init_from: the main one copies)
    proc = launch_two_processes("synthdata/train.py", "recipe=toy", "stage=layout", f"run_dir={tmp_path / 'longer'}",
                                "train.steps=4", f"train.init_from={tmp_path}", *keys, accelerate=True)
    assert proc.stdout.count("layout: starting from step 2 of") == 1
    assert stage_checkpoint(tmp_path / "longer", "layout")[0]["step"] == 4


def test_command_without_run_dir_trains_under_runs_slash_recipe_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["recipe=toy", *TINY, "stage=layout", "train.steps=1"]) == 0
    assert (tmp_path / "runs" / "toy" / "checkpoints" / "layout" / "latest.pt").is_file()


def test_loop_settings_are_checked_and_sample_every_zero_means_only_at_the_end(tmp_path):
    with pytest.raises(ConfigError, match="train.checkpoint_every must be >= 1"):
        run(tmp_path, "layout", 2, "train.checkpoint_every=0")
    run(tmp_path, "layout", 3, "train.sample_every=0", "train.checkpoint_every=3")
    assert [p.name for p in (tmp_path / "run" / "samples" / "layout").glob("*.png")] == ["step-000003.png"]


def test_minutes_budget_sets_steps_from_the_probe_and_reruns_keep_them(tmp_path, capsys):
    import json

    from synthdata.generation.training import PROBE_STEPS, budget_steps

    summary = run(tmp_path, "layout", 1, "train.minutes=0.01")  # train.steps is not used
    record = json.loads((tmp_path / "run" / "checkpoints" / "layout" / "budget.json").read_text())
    assert record["minutes"] == 0.01 and record["probe_steps"] == PROBE_STEPS - 2 and record["device"]
    assert record["steps"] == budget_steps(0.01, record["seconds_per_step"], at_least=PROBE_STEPS)
    assert summary["step"] == record["steps"] == summary["budget"]["steps"]
    assert f"train.minutes=0.01 -> {record['steps']} steps" in capsys.readouterr().out
    again = run(tmp_path, "layout", 1, "train.minutes=0.01")
    assert again["steps"] == 0 and again["step"] == record["steps"]  # the record holds: no new probe


def test_budget_steps_fill_the_minutes_and_never_undercut_the_probe():
    from synthdata.generation.training import budget_steps

    assert budget_steps(30, 0.5, at_least=10) == 3600
    assert budget_steps(0.001, 2.0, at_least=10) == 10


def test_a_budget_run_resumed_after_its_probe_repeats_the_uninterrupted_one(tmp_path, monkeypatch):
    import json

    from synthdata.generation import training

    monkeypatch.setattr(training, "budget_steps", lambda *a, **k: 13)
    straight = run(tmp_path, "image", 1, "train.minutes=1", "train.checkpoint_every=4", run_dir="straight")
    assert straight["step"] == 13
    monkeypatch.setattr(training, "budget_steps", lambda *a, **k: 10)  # stops right after the probe
    run(tmp_path, "image", 1, "train.minutes=1", "train.checkpoint_every=4", run_dir="split")
    path = tmp_path / "split" / "checkpoints" / "image" / "budget.json"
    path.write_text(json.dumps(dict(json.loads(path.read_text()), steps=13)))  # as if stopped there
    resumed = run(tmp_path, "image", 1, "train.minutes=1", "train.checkpoint_every=4", run_dir="split")
    assert resumed["steps"] == 3 and resumed["step"] == 13
    a, _ = stage_checkpoint(tmp_path / "split", "image")
    b, _ = stage_checkpoint(tmp_path / "straight", "image")
    for k in b["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k])


def test_a_damaged_budget_record_is_named(tmp_path):
    run(tmp_path, "layout", 1, "train.minutes=0.001")
    (tmp_path / "run" / "checkpoints" / "layout" / "budget.json").write_text("{")
    with pytest.raises(CheckpointError, match="budget.json: not a budget record"):
        run(tmp_path, "layout", 1, "train.minutes=0.001")


def test_a_second_training_of_one_stage_is_refused_while_one_runs_and_other_stages_may_run(tmp_path, capsys,
                                                                                         lock_holder):
    """Issue 34: one process per stage folder (two would replace each other's checkpoints); a study
    trains a run dir's other stages side by side, so they are not blocked."""
    run = tmp_path / "run"
    args = [*TINY, f"run_dir={run}", "train.steps=1"]
    with lock_holder(run, ".lock-image") as pid:
        assert main(args + ["stage=image"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert f"{run}: another synthdata train stage=image is already running here (pid {pid}, started " in err
        assert sorted(p.name for p in run.iterdir()) == [".lock-image"]  # nothing trained, nothing written
        assert main(args + ["stage=layout"]) == 0
    assert main(args + ["stage=image"]) == 0  # the holder is gone: no stale lock


def test_object_weighted_image_stage_names_its_classes_records_them_and_refuses_unknown_ones(tmp_path, capsys):
    run(tmp_path, "image", 1, "data.has_depth=false", "stages.image.use_depth=false",
        "stages.image.object_classes=auto", "stages.image.object_share=0.7")
    assert "image: losses weighted to box (0.7 of the weight)" in capsys.readouterr().out  # auto: the objects
    ckpt, _ = stage_checkpoint(tmp_path / "run", "image")
    assert ckpt["arch"]["object_ids"] == [2] and ckpt["arch"]["object_share"] == 0.7
    assert stages.spec_from_dict(ckpt["arch"]).object_ids == (2,)
    base = TINY + [f"run_dir={tmp_path / 'bad'}", "stage=image", "data.has_depth=false", "stages.image.use_depth=false"]
    assert main(base + ["stages.image.object_classes=[box, boat]"]) == 2
    assert "stages.image.object_classes: unknown ['boat']" in capsys.readouterr().err
    assert main(base + ["stages.image.object_classes=[box]", "stages.image.object_share=1"]) == 2
    assert "stages.image.object_share" in capsys.readouterr().err
