"""Issue 35's acceptance: the README's "Your own data" commands, run as written on a folder dataset
of a few images, then the plain PyTorch loop of docs/python.md (stock webdataset, no synthdata import) trains on the
shards with the exact integer masks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

DOCS = Path(__file__).resolve().parents[2]


def _section(file: str, start: str, end: str) -> str:
    text = (DOCS / file).read_text()
    return text[text.index(start):text.index(end)]


def particle_folder(root: Path, n: int = 8) -> Path:
    """`images/` + `masks/` of 64x64 grey scenes with bright discs (class 1, 'particle')."""
    rng = np.random.default_rng(0)
    yy, xx = np.ogrid[:64, :64]
    for i in range(n):
        image = (60 + rng.integers(0, 20, (64, 64, 3))).astype(np.uint8)
        mask = np.zeros((64, 64), np.uint8)
        for _ in range(3):
            cy, cx, r = rng.integers(8, 56), rng.integers(8, 56), rng.integers(3, 7)
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            mask[disc], image[disc] = 1, (200, 180, 160)
        for folder, array in (("images", image), ("masks", mask)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(root / folder / f"p{i}.png")
    return root


def test_readme_own_data_commands_and_plain_loop_run_as_written(tmp_path, monkeypatch):
    section = _section("README.md", "## Your own data", "## The pipeline on your data")
    bash = re.findall(r"```bash\n(.*?)```", section, re.S)[0]
    assert "docs/python.md#your-own-data-in-a-plain-loop" in section  # the loop, one link away
    loop = _section("docs/python.md", "## Your own data in a plain loop", "## Using the shards in your own trainer")
    python = re.findall(r"```python\n(.*?)```", loop, re.S)[0]
    assert "synthdata" not in python
    data = particle_folder(tmp_path / "data")
    script = bash.replace("data.root=DIR", f"data.root={data}")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    done = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "recipe size: data.height=256 data.width=256 (images are 64x64, resized); data.height=64 " \
           "data.width=64" in done.stdout
    assert "copy-paste classes (auto" in done.stderr + done.stdout and "particle" in done.stdout + done.stderr
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(python, scope)
    images, masks = scope["images"], scope["masks"]
    assert images.shape[1:] == (3, 64, 64) and masks.dtype.is_floating_point is False
    assert set(masks.unique().tolist()) <= {0, 1} and 1 in masks.unique().tolist()
    assert np.isfinite(float(scope["loss"].detach()))


@pytest.mark.parametrize("key", ["data.root", "data.classes"])
def test_the_folder_template_names_what_it_still_needs(key, capsys):
    from synthdata.check import main

    args = {"data.root": ["data.classes=[a, b]"], "data.classes": ["data.root=/nonexistent"]}[key]
    assert main(["recipe=folder", *args]) in (1, 2)
    out = capsys.readouterr()
    assert key.split(".")[1] in (out.err + out.out)
