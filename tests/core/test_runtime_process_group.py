"""A multi-process command leaves its process group at exit, while the interpreter is whole
(`runtime.leave_process_group`), rather than leaving gloo's threads to interpreter shutdown."""

from __future__ import annotations

SCRIPT = """
import atexit
import torch
from synthdata.core.runtime import make_accelerator

accelerator = make_accelerator(mixed_precision="no")
make_accelerator(mixed_precision="no")  # a second command in the same process registers nothing more
joined = torch.distributed.is_initialized()
accelerator.wait_for_everyone()
atexit._run_exitfuncs()
print(f"rank {accelerator.process_index}: joined {joined}, left {not torch.distributed.is_initialized()}")
"""


def test_two_processes_leave_their_group_at_exit(tmp_path, launch_two_processes):
    script = tmp_path / "leave.py"
    script.write_text(SCRIPT)
    result = launch_two_processes(str(script))
    assert "rank 0: joined True, left True" in result.stdout
    assert "rank 1: joined True, left True" in result.stdout
