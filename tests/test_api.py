"""The Python API (`synthdata.api`, re-exported by the package) and `evaluate miou` on a user's own
model: a light `import synthdata`, the segment bank that `produce` then uses, `produce` as the
command, `evaluate_miou` of any module or function, TorchScript files and importable factories on
the command line, bad `model=` values, and the example of docs/python.md."""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import synthdata
from synthdata.commands import evaluate_miou
from synthdata.core.contract import ConfigError
from synthdata.data.readers import make_reader
from synthdata.data.shards import sha256_file
from synthdata.texturing.segment_bank import SegmentBank

REPO = Path(__file__).resolve().parents[1]
TINY = ["data.height=32", "data.width=64", "data.split_sizes={train: 16, val: 8, test: 8}", "seg.mixed_precision='no'"]
COMPOSITE = ["stages.image.arch=composite", "produce.layouts=real", "produce.copy_paste=2", "produce.num_samples=6",
             "produce.shard_size=3", "produce.batch_size=3", "produce.encode_workers=1", "produce.mixed_precision='no'"]


class Net(nn.Module):
    """A tiny segmenter for the 8 toy classes: images (B, 3, H, W) -> logits (B, 8, H, W)."""

    def __init__(self, classes: int = 8):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, classes, 3, padding=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.conv(images * 2 - 1)


def shard_contents(folder: Path) -> dict[str, object]:
    """Every file of every shard, the samples' meta without `run_dir` (which names the folder)."""
    out: dict[str, object] = {}
    for path in sorted(folder.glob("*.tar")):
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                data = tar.extractfile(member).read()
                if member.name.endswith(".json"):
                    data = {k: v for k, v in json.loads(data).items() if k != "run_dir"}
                out[f"{path.name}/{member.name}"] = data
    return out


def evaluate(*args: str) -> int:
    return evaluate_miou.main(["recipe=toy", *TINY, *args])


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: "), err
    return err[-1]


def test_import_synthdata_imports_no_torch():
    code = textwrap.dedent("""
        import sys
        import synthdata
        assert "torch" not in sys.modules, "import synthdata"
        recipe = synthdata.load_recipe("toy", ["data.height=32"])
        assert recipe.data.height == 32 and "torch" not in sys.modules, "load_recipe"
        assert synthdata.__version__ and {"build_bank", "produce_shards", "evaluate_miou"} <= set(dir(synthdata))
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_api_names_and_the_command_modules_do_not_collide():
    import synthdata.produce as command  # the command module is the package's `produce` attribute

    assert synthdata.produce is command and callable(command.main) and not callable(command)
    from synthdata import api, train

    assert synthdata.produce_shards is api.produce_shards and callable(train.main)
    assert synthdata.build_bank is api.build_bank and synthdata.evaluate_miou is api.evaluate_miou
    with pytest.raises(AttributeError):
        synthdata.no_such_function  # noqa: B018


def test_build_bank_is_the_one_produce_uses_and_produce_is_the_command(tmp_path):
    recipe = synthdata.load_recipe("toy", TINY + COMPOSITE)
    bank_file = tmp_path / "run" / "bank" / "segment_bank.npz"
    bank = synthdata.build_bank(recipe, out=bank_file)
    assert isinstance(bank, SegmentBank) and len(bank) > 0 and bank_file.is_file()
    assert bank.header["split"] == "train" and bank.header["num_sources"] == 16
    assert len(bank.classes) == 8
    before = bank_file.stat().st_mtime_ns, sha256_file(bank_file)

    shards = synthdata.produce_shards(recipe, tmp_path / "run")
    assert shards == tmp_path / "run" / "shards"
    assert (shards / "manifest.json").is_file() and (shards / "layout_check.json").is_file()  # the layout check ran
    assert (bank_file.stat().st_mtime_ns, sha256_file(bank_file)) == before  # produce used the bank, built none
    # the command writes the same shards (it builds its own bank with the same settings)
    from synthdata.produce import main

    assert main(["recipe=toy", *TINY, *COMPOSITE, f"run_dir={tmp_path / 'cmd'}"]) == 0
    ours = shard_contents(shards)
    assert len(ours) == 6 * 4 and ours == shard_contents(tmp_path / "cmd" / "shards")  # image, layout, depth, json
    assert sha256_file(tmp_path / "cmd" / "bank" / "segment_bank.npz") == before[1]
    with pytest.raises(ConfigError, match="no job="):
        synthdata.produce_shards(recipe, tmp_path / "run", job=(0, 2), finalize=True)
    with pytest.raises(ConfigError, match="job must be I/N"):
        synthdata.produce_shards(recipe, tmp_path / "run", job="2/2")


def test_evaluate_miou_of_a_module_and_of_a_function(tmp_path):
    recipe = synthdata.load_recipe("toy", TINY)
    net = Net()
    net.train()
    scores = synthdata.evaluate_miou(net, recipe, out=tmp_path / "eval")
    assert net.training  # its mode is kept
    names = list(json.loads((tmp_path / "eval" / "report.json").read_text())["classes"]["classes"])
    assert set(scores) == {"miou", "pixel_accuracy", "per_class_iou", "image_iou", "num_images", "report"}
    assert 0 <= scores["miou"] <= 1 and 0 <= scores["pixel_accuracy"] <= 1 and scores["num_images"] == 8
    assert list(scores["per_class_iou"]) == names == list(scores["image_iou"]) and len(names) == 8
    report = json.loads(scores["report"].read_text())
    assert report["metrics"]["miou"] == pytest.approx(scores["miou"])
    assert report["info"]["model"]["kind"] == "python object" and report["info"]["model"]["type"].endswith(".Net")
    assert report["info"]["checkpoint"] is None and report["info"]["protocol"]["num_images"] == 8
    assert (tmp_path / "eval" / "report.md").is_file()

    def function(images):  # any callable: the same logits as the module
        with torch.no_grad():
            return net(images)

    net.eval()
    same = synthdata.evaluate_miou(function, recipe, split="val")
    assert not net.training and same["report"] is None
    assert same["miou"] == pytest.approx(scores["miou"], abs=1e-6)
    flipped = synthdata.evaluate_miou(net, synthdata.load_recipe("toy", TINY + ["eval.flips=[horizontal]"]))
    assert 0 <= flipped["miou"] <= 1
    with pytest.raises(ConfigError, match="C = 8 classes"):
        synthdata.evaluate_miou(Net(classes=3), recipe)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit is deprecated, not removed
def test_evaluate_miou_command_with_a_torchscript_file(tmp_path, capsys):
    net = Net().eval()
    path = tmp_path / "mine.pt"
    torch.jit.save(torch.jit.script(net), str(path))
    assert evaluate(f"model={path}") == 0  # the report goes beside the file
    report = json.loads((tmp_path / "eval_val" / "report.json").read_text())
    assert report["info"]["model"] == {"kind": "torchscript", "path": str(path), "sha256": sha256_file(path)}
    assert report["info"]["checkpoint"] is None and report["title"] == "toy val: mine.pt"
    assert "evaluate miou:" in capsys.readouterr().out
    scores = synthdata.evaluate_miou(net, synthdata.load_recipe("toy", TINY))
    assert report["metrics"]["miou"] == pytest.approx(scores["miou"], abs=1e-6)


def test_evaluate_miou_command_with_a_checkpoint_records_it(tmp_path):
    from synthdata.core.checkpoint import portable_checkpoint, save_atomic
    from synthdata.core.recipe import SegModelConfig
    from synthdata.models.segmenters import build_segmenter, load_segmenter, segmenter_arch

    cfg = SegModelConfig(encoder_depth=3, decoder_channels=[16, 8, 8])
    recipe = synthdata.load_recipe("toy", TINY)
    torch.manual_seed(0)
    model = build_segmenter(cfg, num_classes=8)
    path = save_atomic(portable_checkpoint(kind="segmenter", model=model.state_dict(), step=3, recipe={},
                                           classes=make_reader(recipe.data, "val").classes, arch=segmenter_arch(cfg)),
                       tmp_path / "seg.pt")
    assert evaluate(f"checkpoint={path}") == 0
    report = json.loads((tmp_path / "eval_val" / "report.json").read_text())
    assert report["info"]["model"] == {"kind": "checkpoint", "path": str(path)}
    assert report["info"]["checkpoint_sha256"] == sha256_file(path) and report["info"]["checkpoint_step"] == 3
    # the API on the loaded segmenter gives the same numbers
    assert synthdata.evaluate_miou(load_segmenter(path)[0], recipe)["miou"] == pytest.approx(report["metrics"]["miou"], abs=1e-6)


def test_evaluate_miou_command_with_a_factory_from_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / "my_factory_seg.py").write_text(textwrap.dedent("""
        import torch

        def make():
            torch.manual_seed(0)
            return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1))
    """))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "my_factory_seg", raising=False)
    assert evaluate("model=my_factory_seg:make", "out=report") == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    model = report["info"]["model"]
    assert model["kind"] == "factory" and model["factory"] == "my_factory_seg:make"
    assert model["module_file"] == str(tmp_path / "my_factory_seg.py") and model["type"] == "torch.nn.modules.container.Sequential"
    assert str(tmp_path) not in sys.path  # the current directory was searched, not left on the path
    monkeypatch.delitem(sys.modules, "my_factory_seg")


class Marker:
    """Unpickling this touches a file: proof that a file was (or was not) unpickled."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


@pytest.mark.parametrize("kind", ["missing", "torch.save", "pickle", "no module", "no attribute", "not callable",
                                  "returns a number", "factory fails", "no form", "wrong classes", "both", "neither",
                                  "factory without out"])
def test_bad_model_values_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys, kind):
    marker = tmp_path / "unpickled"
    (tmp_path / "bad_factories_seg.py").write_text(textwrap.dedent("""
        import torch
        NUMBER = 3
        def number():
            return 42
        def fails():
            raise RuntimeError("no GPU here")
        def three():
            return torch.nn.Conv2d(3, 3, 1)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "bad_factories_seg", raising=False)
    torch.save({"weights": Marker(marker)}, tmp_path / "state.pt")
    (tmp_path / "raw.pt").write_bytes(pickle.dumps(Marker(marker)))
    out = f"out={tmp_path / 'out'}"
    args, expected = {
        "missing": ([f"model={tmp_path / 'nope.pt'}"], "nope.pt: no such file"),
        "torch.save": ([f"model={tmp_path / 'state.pt'}"], "state.pt: not a TorchScript file"),
        "pickle": ([f"model={tmp_path / 'raw.pt'}"], "raw.pt: not a TorchScript file"),
        "no module": (["model=no_such_module_seg:make", out], "cannot import module 'no_such_module_seg'"),
        "no attribute": (["model=bad_factories_seg:make", out], "module 'bad_factories_seg' has no 'make'"),
        "not callable": (["model=bad_factories_seg:NUMBER", out], "'NUMBER' is a int, not a callable"),
        "returns a number": (["model=bad_factories_seg:number", out], "number() returned a int"),
        "factory fails": (["model=bad_factories_seg:fails", out], "calling fails() failed (RuntimeError: no GPU here)"),
        "no form": (["model=something", out], "model=something: expected a TorchScript file"),
        "wrong classes": (["model=bad_factories_seg:three", out], "gave (8, 3, 32, 64); a segmenter must return logits (B, C, H, W) with C = 8"),
        "both": ([f"checkpoint={tmp_path / 'c.pt'}", "model=bad_factories_seg:three"], "not both"),
        "neither": ([], "give one segmenter: checkpoint=PATH"),
        "factory without out": (["model=bad_factories_seg:three"], "give out=DIR"),
    }[kind]
    assert evaluate(*args) == 2
    line = error_line(capsys)
    assert expected in line and ("model=" in line or "checkpoint=" in line), line
    assert not marker.exists()  # nothing was unpickled


def test_readme_python_api_example(tmp_path, monkeypatch, capsys):
    """The Python API example of docs/python.md, run as written."""
    text = (REPO / "docs" / "python.md").read_text()
    code = re.search(r"```python\n(.*?)```", text[text.index("## Python API"):], re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "docs/python.md", "exec"), namespace)  # noqa: S102  (the documented example, as written)
    run = tmp_path / "runs" / "api"
    assert namespace["shards"] == Path("runs/api/shards") and (run / "shards" / "manifest.json").is_file()
    assert (run / "eval" / "report.json").is_file() and 0 <= namespace["scores"]["miou"] <= 1
    assert "% mIoU" in capsys.readouterr().out
