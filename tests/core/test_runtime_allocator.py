"""The allocator setting: glibc keeps large freed blocks for reuse instead of mapping them afresh
(page-faulted and zeroed by the kernel) at every allocation; a user's own tuning or allocator wins."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from synthdata.core.runtime import M_MMAP_MAX, M_TRIM_THRESHOLD, benchmark_allocator, configure_allocator


class FakeLibc:
    def __init__(self, result: int = 1):
        self.calls: list[tuple[int, int]] = []
        self.result = result

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.result


def test_sets_no_mmap_and_no_trimming():
    libc = FakeLibc()
    assert configure_allocator(environ={}, libc=libc) is True
    assert libc.calls == [(M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1)]


@pytest.mark.parametrize("environ", [
    {"SYNTHDATA_MALLOC": "default"},
    {"GLIBC_TUNABLES": "glibc.malloc.mmap_max=0"},
    {"MALLOC_MMAP_MAX_": "65536"},
    {"MALLOC_TRIM_THRESHOLD_": "131072"},
    {"MALLOC_MMAP_THRESHOLD_": "1048576"},
    {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"},
    {"LD_PRELOAD": "libtcmalloc_minimal.so.4"},
])
def test_users_own_tuning_or_allocator_is_left_alone(environ):
    libc = FakeLibc()
    assert configure_allocator(environ=environ, libc=libc) is False
    assert libc.calls == []


def test_an_unknown_choice_is_refused_naming_the_variable():
    from synthdata.core.contract import ConfigError

    with pytest.raises(ConfigError, match="SYNTHDATA_MALLOC='defualt'"):
        configure_allocator(environ={"SYNTHDATA_MALLOC": "defualt"}, libc=FakeLibc())
    assert configure_allocator(environ={"SYNTHDATA_MALLOC": "reuse"}, libc=FakeLibc()) is True


def test_a_refused_setting_reports_false():
    assert configure_allocator(environ={}, libc=FakeLibc(result=0)) is False


def test_benchmarks_say_which_allocator_they_timed_with(monkeypatch):
    assert benchmark_allocator(keep_defaults=True) == "allocator: glibc defaults"
    monkeypatch.setenv("SYNTHDATA_MALLOC", "default")  # the commands' opt-out holds for the tools too
    assert benchmark_allocator() == "allocator: glibc defaults"


FAULTS = """
import ctypes, resource, sys, torch
ctypes.CDLL(None).prctl(41, 1, 0, 0, 0)  # PR_SET_THP_DISABLE: 4 KB pages (and faults) even where THP is "always"
from synthdata.core.runtime import configure_allocator
applied = configure_allocator(environ={}) if sys.argv[1] == "set" else False
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):
        torch.ones(64 * 2**20, dtype=torch.uint8)  # 64 MB: above glibc's largest mmap threshold
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults()
print(applied, faults())
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_large_blocks_are_reused_without_page_faults():
    """Four 64 MB tensors one after another: by default each is mapped and faulted in afresh
    (~16k faults of 4 KB pages each); with the setting, the freed block is reused (none)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MALLOC_") and k not in ("LD_PRELOAD", "GLIBC_TUNABLES", "SYNTHDATA_MALLOC")}
    out = {}
    for mode in ("set", "default"):
        run = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, env=env,
                             timeout=120)
        applied, faults = run.stdout.split()
        out[mode] = (applied, int(faults))
    assert out["set"][0] == "True"
    assert out["set"][1] < 1000, out
    assert out["default"][1] > 4 * 8000, out
