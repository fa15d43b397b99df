"""CPU threads follow the user's OMP_NUM_THREADS, the affinity mask, the processes per machine and
the cores other programs keep busy."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from synthdata.core import runtime
from synthdata.core.runtime import cpu_threads


def test_user_setting_wins():
    assert cpu_threads(environ={"OMP_NUM_THREADS": "3"}, cores=8, load=0.0) is None


@pytest.mark.parametrize("cores, local, load, expected", [
    (2, 1, 0.0, 2),   # idle 2-core machine: both cores
    (2, 1, 1.0, 1),   # one busy process beside us: one thread, not two that stall each other
    (2, 1, 0.4, 2),   # a half-busy core still counts as free
    (2, 2, 0.0, 1),   # two processes (accelerate / torchrun) share the cores
    (16, 4, 0.0, 4),
    (16, 1, 3.0, 13),
    (2, 1, 5.0, 1),   # never fewer than one
])
def test_threads_from_cores_processes_and_load(cores, local, load, expected):
    assert cpu_threads(environ={"LOCAL_WORLD_SIZE": str(local)}, cores=cores, load=load) == expected


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux affinity masks")
def test_affinity_mask_bounds_the_threads():
    """A process pinned to one core (taskset, cgroups, a scheduler's slot) uses one thread."""
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from synthdata.core.runtime import cpu_threads; print(cpu_threads(environ={}, load=0.0))")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.strip() == "1", out.stderr[-1000:]


def test_busy_elsewhere_counts_a_busy_process():
    from synthdata.core.runtime import busy_elsewhere

    if not os.path.exists("/proc/stat"):
        pytest.skip("needs /proc/stat")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.5)
        assert busy_elsewhere(samples=5, interval=0.02) >= 1
    finally:
        spinner.kill()
        spinner.wait()


def test_threads_held_are_chosen_once_for_every_command_inside(monkeypatch):
    """Inside `threads_held` a command's own `configure_threads` keeps the count chosen on entry,
    however busy the machine looks when it starts; after it, the choice is the load's again."""
    loads = iter([0.0, 5.0, 5.0, 5.0])
    monkeypatch.setattr(runtime, "busy_elsewhere", lambda: next(loads))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        with runtime.threads_held() as held:
            assert held == 2 and os.environ["OMP_NUM_THREADS"] == "2"
            assert runtime.configure_threads() == 2  # the machine now looks busy: still 2
            assert runtime.configure_threads() == 2
        assert "OMP_NUM_THREADS" not in os.environ
        assert runtime.configure_threads() == 1  # outside: the load decides again
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        with runtime.threads_held() as held:  # the user's setting stays theirs
            assert os.environ["OMP_NUM_THREADS"] == "1"
        assert os.environ["OMP_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(before)
