"""SegGAN refinement: only the segmenter learns, the losses reach its output, bad inputs are named."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from synthdata.core.checkpoint import load_checkpoint, save_atomic
from synthdata.core.contract import CheckpointError, ClassInfo
from synthdata.refine import main as refine_main
from synthdata.segmentation import seggan as refine_mod

TINY = ["data.height=32", "data.width=64", "data.split_sizes={train: 8, val: 4, test: 4}"]
IMAGE_STAGE = ["stages.image.use_depth=false", "stages.image.ngf=4", "stages.image.ndf=4",
               "stages.image.num_discriminators=1", "stages.image.z_dim=8", "train.batch_size=2",
               "train.steps=1", "train.checkpoint_every=1", "train.sample_every=1", "train.mixed_precision=no"]
SEGMENTER = ["seg.model.encoder_depth=3", "seg.steps=1", "seg.batch_size=2", "seg.val_every=0",
             "seg.checkpoint_every=0", "seg.mixed_precision='no'", "eval.batch_size=4"]
REFINE = ["refine.steps=2", "refine.batch_size=2", "refine.checkpoint_every=1", "refine.mixed_precision='no'",
          "refine.lr=1.0e-2"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A toy run with a depth-free image stage and a segmenter, each trained for one step."""
    from synthdata import segment, train

    run = tmp_path_factory.mktemp("refine")
    assert train.main(["recipe=toy", "stage=image", f"run_dir={run}", *TINY, *IMAGE_STAGE]) == 0
    assert segment.main(["recipe=toy", f"run_dir={run}", *TINY, *SEGMENTER]) == 0
    return run


def _classes(run: Path) -> ClassInfo:
    return ClassInfo.from_dict(load_checkpoint(run / "checkpoints" / "image" / "latest.pt")["classes"])


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_refinement_changes_only_the_segmenter(run_dir: Path) -> None:
    from synthdata.models.segmenters import load_segmenter

    classes = _classes(run_dir)
    G, D, spec = refine_mod.load_image_stage(run_dir / "checkpoints" / "image" / "latest.pt", classes,
                                             recipe_name="toy", run_dir=run_dir, device="cpu")
    seg, _ = load_segmenter(run_dir / "checkpoints" / "segmenter" / "latest.pt", expected=classes)
    g0, d0, s0 = _state(G), _state(D), _state(seg)
    seg.train()
    opt = torch.optim.Adam(seg.parameters(), lr=1e-2)
    torch.manual_seed(0)
    images = torch.rand(2, 3, 32, 64)
    target = torch.randint(0, classes.num_classes, (2, 32, 64))
    for _ in range(2):
        out = refine_mod.refinement_losses(seg(images), images, target, generator=G, discriminator=D,
                                           z=torch.randn(2, spec.z_dim), ignore_index=255,
                                           lambda_content=1.0, lambda_adv=1.0)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    for frozen, before in ((G, g0), (D, d0)):
        assert not frozen.training
        assert all(not p.requires_grad and p.grad is None for p in frozen.parameters())
        after = frozen.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)  # bitwise, buffers included
    assert any(not torch.equal(s0[k], v) for k, v in seg.state_dict().items())


def test_content_and_adversarial_losses_reach_the_segmenter_output(run_dir: Path) -> None:
    classes = _classes(run_dir)
    G, D, spec = refine_mod.load_image_stage(run_dir / "checkpoints" / "image" / "latest.pt", classes,
                                             recipe_name="toy", run_dir=run_dir, device="cpu")
    torch.manual_seed(1)
    images, target = torch.rand(2, 3, 32, 64), torch.randint(0, classes.num_classes, (2, 32, 64))
    for term in ("content", "adv"):
        logits = torch.randn(2, classes.num_classes, 32, 64, requires_grad=True)
        out = refine_mod.refinement_losses(logits, images, target, generator=G, discriminator=D,
                                           z=torch.zeros(2, spec.z_dim), ignore_index=255,
                                           lambda_content=0.1, lambda_adv=0.1)
        out[term].backward()
        assert logits.grad is not None and logits.grad.abs().sum() > 0, term


def test_refine_command_writes_before_after_and_resumes(run_dir: Path, capsys) -> None:
    assert refine_main(["recipe=toy", f"run_dir={run_dir}", *TINY, *REFINE]) == 0
    out = run_dir / "refine"
    for part in ("before", "after"):
        assert (out / part / "report.json").is_file() and (out / part / "report.md").is_file()
    assert (out / "compare.md").is_file()
    refined = load_checkpoint(run_dir / "checkpoints" / "refine" / "latest.pt")
    original = load_checkpoint(run_dir / "checkpoints" / "segmenter" / "latest.pt")
    assert refined["kind"] == "segmenter" and refined["step"] == 2
    assert any(not torch.equal(original["model"][k], v) for k, v in refined["model"].items())
    capsys.readouterr()
    assert refine_main(["recipe=toy", f"run_dir={run_dir}", *TINY, *REFINE[:-1], "refine.steps=3"]) == 0
    assert load_checkpoint(run_dir / "checkpoints" / "refine" / "latest.pt")["step"] == 3
    assert "refine: 3 steps" in capsys.readouterr().out


def test_missing_generator_names_the_training_command(tmp_path: Path, run_dir: Path, capsys) -> None:
    seg = run_dir / "checkpoints" / "segmenter" / "latest.pt"
    code = refine_main(["recipe=toy", f"run_dir={tmp_path}", f"refine.segmenter={seg}", *TINY, *REFINE])
    err = capsys.readouterr().err
    assert code == 2
    assert "synthdata train" in err and "stage=image" in err and "use_depth=false" in err


def test_generator_for_other_classes_is_refused(tmp_path: Path, run_dir: Path) -> None:
    ckpt = load_checkpoint(run_dir / "checkpoints" / "image" / "latest.pt")
    ckpt["classes"] = dict(ckpt["classes"], classes=[f"other{i}" for i in range(len(ckpt["classes"]["classes"]))])
    path = save_atomic(ckpt, tmp_path / "image" / "latest.pt")
    with pytest.raises(CheckpointError, match="trained for classes"):
        refine_mod.load_image_stage(path, _classes(run_dir), recipe_name="toy", run_dir=tmp_path, device="cpu")


def test_depth_conditioned_generator_is_refused(tmp_path: Path, run_dir: Path) -> None:
    ckpt = load_checkpoint(run_dir / "checkpoints" / "image" / "latest.pt")
    ckpt["arch"] = dict(ckpt["arch"], use_depth=True)
    path = save_atomic(ckpt, tmp_path / "image" / "latest.pt")
    with pytest.raises(CheckpointError, match="use_depth=false"):
        refine_mod.load_image_stage(path, _classes(run_dir), recipe_name="toy", run_dir=tmp_path, device="cpu")


def test_gradient_tool_measures_each_term_against_cross_entropy(run_dir: Path, capsys) -> None:
    """tools/seggan_gradients.py: cross-entropy is its own yardstick (share 1, cosine +1), a term
    weighted 0 gives no gradient, the segmenter file is left as it was, and a missing checkpoint
    argument is one line with exit code 2."""
    import runpy

    tool = Path(__file__).resolve().parents[2] / "tools" / "seggan_gradients.py"
    main = runpy.run_path(str(tool))["main"]
    segmenter = run_dir / "checkpoints" / "segmenter" / "latest.pt"
    before = segmenter.read_bytes()
    args = ["recipe=toy", *TINY, f"refine.segmenter={segmenter}",
            f"refine.generator={run_dir / 'checkpoints' / 'image' / 'latest.pt'}", "refine.batch_size=2", "batches=2",
            "refine.lambda_adv=0"]
    assert main(args) == 0
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:6]]
            for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line}
    assert rows["cross-entropy"][2:] == ["1.000", "+1.000"]
    assert float(rows["content"][1]) > 0 and rows["adversarial"][1:3] == ["0", "0.000"]
    assert segmenter.read_bytes() == before
    from synthdata.core.entry import run_main

    assert run_main(main, ["recipe=toy", *TINY, f"refine.segmenter={segmenter}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refine.generator" in err[0]
    assert run_main(main, args + ["batches=x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "batches must be a whole number >= 1, got 'x'" in err[0]
