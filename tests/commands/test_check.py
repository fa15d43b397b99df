"""`synthdata check`: a clean fixture tree passes, problems are listed with their files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from synthdata.check import main as check_main
from synthdata.cli import main as cli_main


def _load_fixtures():
    spec = importlib.util.spec_from_file_location("synthdata_check_fixtures", Path(__file__).parents[1] / "data" / "readers" / "fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fx = _load_fixtures()


def test_check_clean_camvid_tree(tmp_path, capsys):
    root = fx.make_camvid(tmp_path / "camvid")
    assert cli_main(["check", "recipe=camvid", f"data.root={root}", "split=val"]) == 0
    out = capsys.readouterr().out
    assert "pairs: 2" in out and "16x12 (2)" in out
    assert "Sky" in out and "problems: 0" in out
    assert out.strip().splitlines()[-1].startswith("check camvid/val: 2 pairs") and "clean" in out


def test_check_lists_each_problem_with_its_file(tmp_path, capsys):
    root = fx.make_camvid(tmp_path / "camvid", sizes={"train": 4})
    fx.save_png(root / "trainannot" / "0001TP_train001.png", np.full((fx.H, fx.W), 40, dtype=np.uint8))
    fx.save_png(root / "trainannot" / "0001TP_train002.png", np.zeros((5, 7), dtype=np.uint8))
    fx.truncate(root / "train" / "0001TP_train003.png", keep=0.3)
    code = check_main(["recipe=camvid", f"data.root={root}"])
    out = capsys.readouterr().out
    assert code == 1
    assert "problems: 3" in out
    assert "trainannot/0001TP_train001.png: 192 pixels have labels [40]" in out
    assert "undeclared values: [40]" in out
    assert "0001TP_train002.png: mask size 7x5 differs" in out
    assert "0001TP_train003.png: cannot decode" in out
    assert "3 problems" in out.strip().splitlines()[-1]


def test_check_limit_and_unpaired_image(tmp_path, capsys):
    root = fx.make_folder(tmp_path / "f", splits=("train",), n=3)
    args = ["recipe=toy", "data.reader=folder", f"data.root={root}", "data.classes=[a, b, c]"]
    assert check_main(args + ["limit=2"]) == 0
    assert "pairs: 2" in capsys.readouterr().out
    (root / "train" / "masks" / "img1.png").unlink()
    assert check_main(args) == 1
    out = capsys.readouterr().out
    assert "images without a mask" in out and "img1.png" in out


def test_check_bad_argument_is_an_error(capsys):
    assert check_main(["recipe=camvid", "splitt=val"]) == 2
    assert "Did you mean 'split'" in capsys.readouterr().err
