"""`study.executor=submitit`: a study's jobs as submitit jobs, on SLURM where the study runs on a
SLURM login node (one job per generator run, production or cell; `study.executor_parameters` go to
`executor.update_parameters`, e.g. `{slurm_partition: gpu, gpus_per_node: 1, timeout_min: 240}`),
else as submitit's local jobs (subprocesses). The scheduler polls them as it polls local workers;
submitit keeps its job files in RUN_DIR/study/submitit.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from synthdata.core.contract import ConfigError


class JobCommands:
    """What one submitted job runs: the job's commands one after another, output appended to its
    log; the exit code of the first that fails, else 0 (picklable: submitit ships it to the node)."""

    def __init__(self, commands: list[list[str]], env: dict[str, str], log_path: Path):
        self.commands, self.env, self.log_path = commands, env, Path(log_path)

    def __call__(self) -> int:
        with open(self.log_path, "a") as out:
            for command in self.commands:
                out.write(f"$ {' '.join(command)}\n")
                out.flush()
                code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=self.env).returncode
                if code != 0:
                    return code
        return 0


class SubmittedJob:
    """A submitit job behind the part of `subprocess.Popen` the scheduler uses."""

    def __init__(self, job: Any):
        self.job, self.pid = job, job.job_id

    def poll(self) -> int | None:
        if not self.job.done():
            return None
        try:
            return int(self.job.result())
        except Exception:  # noqa: BLE001  (the job died: its log and submitit's files say why)
            return 1

    def terminate(self) -> None:
        self.job.cancel(check=False)

    def wait(self) -> None:
        pass


def require_submitit() -> Any:
    """The submitit module, or one line (ConfigError) saying how to get it: checked before a study
    plans anything."""
    try:
        import submitit  # noqa: PLC0415  (optional: pip install 'synthdata[cluster]')
    except ImportError:
        raise ConfigError("study.executor=submitit needs the submitit package: pip install 'synthdata[cluster]' "
                          "(or pip install submitit), or use study.executor=local") from None
    return submitit


def make_executor(folder: Path, parameters: dict[str, Any] | None) -> Any:
    """A `submitit.AutoExecutor` writing its files under `folder`; a parameter submitit does not
    know is one line (ConfigError) naming the key."""
    executor = require_submitit().AutoExecutor(folder=folder)
    try:
        executor.update_parameters(**(parameters or {}))
    except (TypeError, ValueError, NameError, AssertionError) as error:  # submitit says NameError for a name
        raise ConfigError(f"study.executor_parameters: {' '.join(str(error).split())}") from None
    return executor
