"""`--help` / `-h` on every command and every `synthdata evaluate WHAT` (issue 15, defect 8):
usage and keys on stdout, exit code 0, nothing on stderr."""

from __future__ import annotations

import pytest

from synthdata.cli import COMMANDS
from synthdata.cli import main as cli
from synthdata.evaluate import EVALUATIONS

# commands whose keys are the recipe's plus their own arguments (parse_command_line)
OWN_ARGUMENTS = {
    "check": ["split=", "limit="], "export": ["split=", "out=", "prefix="], "train": ["stage=", "run_dir="],
    "produce": ["run_dir=", "max_shards="], "segment": ["run_dir="], "refine": ["run_dir="],
    "translate": ["run_dir="], "demo": ["run_dir="], "config": [],
}
SPECIAL = {"inspect": ["PATH_OR_PATTERN", "limit=", "verify="], "compare": ["REPORT", "out=DIR"],
           "evaluate": list(EVALUATIONS)}
EVALUATE_ARGUMENTS = {"miou": ["checkpoint=... (required)", "split="], "fid": ["real=", "fake="],
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
            assert f"\n  {section} " in captured.out


@pytest.mark.parametrize("what", sorted(EVALUATIONS))
def test_every_evaluation_prints_its_usage_and_keys(what, capsys):
    assert cli(["evaluate", what, "--help"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and f"evaluate {what}" in captured.out
    for word in EVALUATE_ARGUMENTS[what]:
        assert word in captured.out, (what, word)
    assert "\n  eval: " in captured.out and "recipe=NAME|PATH" in captured.out


def test_help_after_other_arguments_still_helps(capsys):
    assert cli(["produce", "recipe=camvid", "produce.num_samples=5", "--help"]) == 0
    assert "max_shards" in capsys.readouterr().out
