"""Shared fixtures: tiny recipes and the optional real datasets beside the project."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


@pytest.fixture
def shared_datasets() -> Path:
    """`../shared/datasets` (CamVid, SEM particles); the test skips when it is absent."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip("../shared/datasets is not present")
    return SHARED_DATASETS


@pytest.fixture
def tiny_toy_overrides() -> list[str]:
    """Overrides that make the toy recipe small enough for tests that train for real."""
    return [
        "data.height=32",
        "data.width=64",
        "data.split_sizes={train: 16, val: 8, test: 8}",
        "train.batch_size=2",
    ]


@pytest.fixture
def glibc_allocator(monkeypatch):
    """For tests that run a benchmark tool in the test process: the tools set glibc's allocator as
    the commands do (`runtime.benchmark_allocator`), which would change the test process's; keep
    glibc's defaults (`SYNTHDATA_MALLOC=default`)."""
    monkeypatch.setenv("SYNTHDATA_MALLOC", "default")


def ranks_output(stderr: str) -> str:
    """What a failed 2-process launch's ranks printed (launched with `--tee 3`, their lines carry a
    `[defaultN]:` prefix), then the launcher's own last lines: a rank that aborts says why only in
    its lines, which a plain tail of stderr (the launcher's traceback) leaves out."""
    lines = stderr.splitlines()
    ranks = [line for line in lines if line.startswith("[default")]
    return "\n".join(["ranks:", *ranks[-60:], "launcher:", *lines[-12:]])


@pytest.fixture
def launch_two_processes(tmp_path_factory):
    """`launch(*command)` runs COMMAND (a script and its arguments) in two CPU processes (gloo),
    one thread each, from the repository, through `torch.distributed.run --standalone`, or through
    `accelerate launch --multi_gpu` (two CPU processes without GPUs; `--cpu --num_processes 2`
    would silently start one) with `accelerate=True`. It fails the test with the ranks' own output.
    The timeout is generous: a loaded 2-core machine once needed over 120 s for a 2-step run."""

    def launch(*command: str, accelerate: bool = False, timeout: float = 600) -> subprocess.CompletedProcess:
        logs = str(tmp_path_factory.mktemp("launch-logs"))
        if accelerate:
            with socket.socket() as s:  # a free port, so parallel test runs do not collide
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            launcher = ["accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--mixed_precision", "no",
                        "--main_process_port", str(port), "--log_dir", logs, "--tee", "3"]
        else:
            launcher = ["torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--log-dir", logs, "--tee", "3"]
        env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
        result = subprocess.run([sys.executable, "-m", *launcher, *command], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, ranks_output(result.stderr)
        return result

    return launch



@pytest.fixture(scope="session")
def random_stages():
    """`random_stages(root, overrides, names)`: see `_random_stages`."""
    return _random_stages


def _random_stages(root: Path, overrides: list[str], names: tuple[str, ...] = tuple("abcd")) -> Path:
    """`root/checkpoints/{layout,depth,image}/latest.pt`: randomly initialised stages of the toy
    recipe with `overrides`, for classes `names` (the command tests' stand-in for trained stages)."""
    import torch

    from synthdata.core.checkpoint import portable_checkpoint, save_atomic
    from synthdata.core.contract import ClassInfo
    from synthdata.core.palette import default_palette
    from synthdata.core.recipe_loading import load_recipe, recipe_to_dict
    from synthdata.generation import stages

    recipe = load_recipe("toy", overrides)
    classes = ClassInfo(names, default_palette(len(names)))
    torch.manual_seed(0)
    for stage in stages.STAGES:
        spec = stages.stage_spec(stage, recipe, num_classes=len(names), use_depth=True, max_depth=50.0)
        model = spec.build_generator()
        save_atomic(portable_checkpoint(kind=f"generator-{stage}", model=model.state_dict(), step=1,
                                        recipe=recipe_to_dict(recipe), classes=classes, ema=model.state_dict(),
                                        arch=spec.to_dict()), root / "checkpoints" / stage / "latest.pt")
    return root


_HOLD_LOCK = """import sys, time
from pathlib import Path
from synthdata.core.folder_lock import folder_lock
with folder_lock(Path(sys.argv[1]), "another run", sys.argv[2]):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def lock_holder():
    """`with lock_holder(folder[, name]) as pid:` another process holds FOLDER/NAME (default `.lock`),
    as a running command would, for the block; it is killed after, and the kernel drops its lock."""
    from contextlib import contextmanager

    @contextmanager
    def hold(folder: Path, name: str = ".lock"):
        holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(folder), name], stdout=subprocess.PIPE,
                                  text=True)
        try:
            assert holder.stdout.readline().strip() == "held"
            yield holder.pid
        finally:
            holder.kill()
            holder.wait()
            holder.stdout.close()

    return hold
