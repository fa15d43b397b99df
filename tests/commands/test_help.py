"""`--help` / `-h` on every command and every `synthdata evaluate WHAT` (issue 15, defect 8):
usage and keys on stdout, exit code 0, nothing on stderr. Issue 35: each recipe key with its
default, valid values and meaning; answered before torch is imported; `--version`."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import subprocess
import sys
import typing

import pytest

from synthdata import __version__
from synthdata.cli import COMMANDS, fast_help
from synthdata.cli import main as cli
from synthdata.commands.evaluate import EVALUATIONS
from synthdata.core.recipe import Recipe

# commands whose keys are the recipe's plus their own arguments (parse_command_line)
OWN_ARGUMENTS = {
    "check": ["split=", "limit="], "export": ["split=", "out=", "prefix="], "train": ["stage=", "run_dir="],
    "produce": ["run_dir=", "max_shards="], "segment": ["run_dir="], "refine": ["run_dir="],
    "translate": ["run_dir="], "demo": ["run_dir="], "config": [],
}
SPECIAL = {"inspect": ["PATH_OR_PATTERN", "limit=", "verify="], "compare": ["REPORT", "out=DIR"],
           "evaluate": list(EVALUATIONS)}
EVALUATE_ARGUMENTS = {"miou": ["checkpoint=", "model=", "split="], "fid": ["real=", "fake="],
                      "fidelity": ["shards=", "segmenter="], "layouts": ["real=... (required)", "fake="]}


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_prints_its_usage_and_keys(command, flag, capsys):
    assert cli([command, flag]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "expected key=value" not in captured.out
    for word in OWN_ARGUMENTS.get(command, SPECIAL.get(command, [])):
        assert word in captured.out, (command, word)
    if command not in SPECIAL:
        assert "recipe=NAME|PATH" in captured.out and "recipe keys" in captured.out
        for section in ("data:", "train:", "produce:", "seg:", "eval:"):
            assert f"\n{section} " in captured.out


@pytest.mark.parametrize("what", sorted(EVALUATIONS))
def test_every_evaluation_prints_its_usage_and_keys(what, capsys):
    assert cli(["evaluate", what, "--help"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and f"evaluate {what}" in captured.out
    for word in EVALUATE_ARGUMENTS[what]:
        assert word in captured.out, (what, word)
    assert "\neval: " in captured.out and "recipe=NAME|PATH" in captured.out


def test_help_after_other_arguments_still_helps(capsys):
    assert cli(["produce", "recipe=camvid", "produce.num_samples=5", "--help"]) == 0
    assert "max_shards" in capsys.readouterr().out


def _leaf_keys(cls: type = Recipe, prefix: str = "") -> list[str]:
    hints = typing.get_type_hints(cls)
    keys = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            keys += _leaf_keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def _key_line(text: str, key: str) -> str:
    (line,) = [line for line in text.splitlines() if line.startswith(f"  {key}=")]
    return " ".join(line.split())


def test_every_key_has_one_line_with_its_default_valid_values_and_meaning(capsys):
    assert cli(["produce", "--help"]) == 0
    out = capsys.readouterr().out
    for key in _leaf_keys():
        _key_line(out, key)  # exactly one line per key, whatever the section
    expected = {  # key: words its line holds, in order (default, valid values, the comment beside it in recipe.py)
        "produce.layouts": ["=generated", "generated | real | mixed"],
        "produce.jpeg_quality": ["=95", "int in [1, 100]"],
        "produce.num_samples": ["=1000 (toy: 2048)", "int"],  # the schema's default, and the default recipe's
        "stages.layout.z_dim": ["=128 (toy: 64)", "int >= 1"],
        "stages.depth.lambda_l1": ["=20.0", "float"],  # StagesConfig's default depth stage, not SpadeStageConfig's
        "seg.lr": ["=0.001", "float > 0"],
        "data.val_fraction": ["=null", "float in (0, 1) | null", "hold out this fraction as val", "val is refused there"],
        "data.split_sizes": ["={train: 512, val: 128, test: 128}", "dict[str, int]", "toy world: scenes per split"],
        "data.subset": ["float | str | null", "low-data subset of the training split", "file of ids (one a line); None: all"],
        "produce.copy_paste_classes": ["=null", "list[str] | auto | null", "classes whose objects may be pasted", "Bicyclist)"],
        "stages.image.z_dim": ["=64", "style noise; 0 disables it"],  # inherited from SpadeStageConfig with its comment
        "stages.image.composite.blend": ["=none", "none | gaussian", "gaussian: feathered boundaries"],
        "eval.window": ["=null", "list[int >= 1] | null", "[H, W] of the sliding window"],
        "train.mixed_precision": ["=auto", "str | bool", "auto | no | bf16 | fp16"],
        "study.baseline": ["='real only'", "str", "name of the baseline row"],
        "data.strict_labels": ["=false", "bool", "labels outside the classes: error"],
    }
    for key, words in expected.items():
        line = _key_line(out, key)
        at = 0
        for word in words:
            assert word in line[at:], (key, word, line)
            at = line.index(word, at) + len(word)
    for heading in ("data: Which dataset", "stages.image: The image stage", "stages.image.composite: stages.image.arch=composite",
                    "(top level): A whole recipe", "study: `synthdata study`"):
        assert f"\n{heading}" in out, heading


def _printed(main, argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(argv) == 0
    return out.getvalue().rstrip("\n")


@pytest.mark.parametrize("command", [c for c in sorted(COMMANDS) if c not in ("compare", "evaluate")]
                         + [f"evaluate {w}" for w in EVALUATIONS])
def test_help_read_from_the_source_is_what_the_command_itself_prints(command):
    """`synthdata COMMAND --help` answers from the command's source (no import); `python -m
    synthdata.COMMAND --help` (and `accelerate launch`) asks the imported command: the same text."""
    name, *what = command.split()
    fast = fast_help(name, [*what, "--help"])
    assert fast is not None, f"{command}: its arguments are no longer a literal in _main: --help imports torch"
    module = importlib.import_module(EVALUATIONS[what[0]] if what else COMMANDS[name][0])
    assert fast == _printed(module.main, ["--help"])


# one interpreter: each command line, then which heavy modules it imported
NO_TORCH = r"""
import contextlib, io, sys
from synthdata.cli import main
for argv in (["produce", "--help"], ["train", "recipe=camvid", "-h"], ["evaluate", "fid", "--help"], ["inspect", "--help"],
             ["segment", "--version"]):
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    heavy = sorted(m for m in ("torch", "accelerate", "torchvision", "webdataset", "synthdata.generation") if m in sys.modules)
    print(" ".join(argv), code, ",".join(heavy) or "-")
"""


def test_help_and_version_do_not_import_torch():
    result = subprocess.run([sys.executable, "-c", NO_TORCH], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = result.stdout.splitlines()
    assert len(rows) == 5, result.stdout + result.stderr[-2000:]
    for row in rows:
        assert row.endswith(" 0 -"), row  # exit 0, none of the heavy modules


@pytest.mark.parametrize("argv", [["--version"], ["produce", "--version"], ["evaluate", "miou", "--version"]])
def test_version(argv, capsys):
    assert cli(argv) == 0
    assert capsys.readouterr().out == f"synthdata {__version__}\n"


def test_usage_mentions_help_and_version(capsys):
    assert cli(["--help"]) == 0
    out = capsys.readouterr().out
    assert "synthdata COMMAND --help" in out and "synthdata --version" in out
