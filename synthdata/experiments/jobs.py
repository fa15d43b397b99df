"""Running a study's jobs (generator runs, productions, segmenter cells): as subprocesses,
`study.workers` at a time with `study.threads` threads each (one GPU each, round robin, where
there are GPUs), or one after another in this process; finished jobs are skipped on a rerun.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

import synthdata


@dataclass
class Job:
    """Commands run one after another in one worker slot once `deps` are done."""

    id: str
    commands: list[list[str]]
    deps: list[str] = field(default_factory=list)
    done_file: Path | None = None
    on_done: Callable[[float], None] | None = None

    def done(self) -> bool:
        return self.done_file is not None and self.done_file.is_file()


def child_env(threads: int, slot: int) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(threads)
    root = str(Path(synthdata.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    if torch.cuda.is_available() and "CUDA_VISIBLE_DEVICES" not in os.environ:
        env["CUDA_VISIBLE_DEVICES"] = str(slot % torch.cuda.device_count())
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)  # each job is its own single-process run
    return env


def execute(jobs: list[Job], *, workers: int, threads: int, log_dir: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Run the jobs that are not done, `workers` at a time, respecting `deps`. Returns
    `{"ran": [...], "skipped": [...], "failed": {id: reason}}`; a failed job fails its dependants."""
    log_dir.mkdir(parents=True, exist_ok=True)
    done = {j.id for j in jobs if j.done()}
    pending = [j for j in jobs if j.id not in done]
    summary: dict[str, Any] = {"ran": [], "skipped": sorted(done), "failed": {}}
    running: dict[int, tuple[Job, subprocess.Popen, int, float, Any]] = {}  # slot -> job, process, command, start
    bar = tqdm(total=len(pending), desc="study", unit="job")

    if workers == 1:  # one at a time: in this process, as the demo chains commands (no start-up per job)
        return _execute_in_process(jobs, done, pending, summary, log)

    def start(slot: int, job: Job, index: int, started: float) -> None:
        out = open(log_dir / f"{job.id.replace('/', '__')}.log", "a")
        out.write(f"$ {' '.join(job.commands[index])}\n")
        out.flush()
        proc = subprocess.Popen(job.commands[index], stdout=out, stderr=subprocess.STDOUT, env=child_env(threads, slot))
        running[slot] = (job, proc, index, started, out)

    try:
        while pending or running:
            for job in list(pending):
                if any(d in summary["failed"] for d in job.deps):
                    pending.remove(job)
                    summary["failed"][job.id] = "a job it needs failed"
                    bar.update(1)
                    continue
                free = [s for s in range(workers) if s not in running]
                if free and all(d in done for d in job.deps):
                    pending.remove(job)
                    log(f"start {job.id}")
                    start(free[0], job, 0, time.time())
            time.sleep(0.2)
            for slot, (job, proc, index, started, out) in list(running.items()):
                code = proc.poll()
                if code is None:
                    continue
                out.close()
                del running[slot]
                if code != 0:
                    summary["failed"][job.id] = f"exit {code}, see {log_dir / (job.id.replace('/', '__') + '.log')}"
                    log(f"failed {job.id}: {summary['failed'][job.id]}")
                    bar.update(1)
                elif index + 1 < len(job.commands):
                    start(slot, job, index + 1, started)
                else:
                    if job.on_done is not None:
                        job.on_done(time.time() - started)
                    done.add(job.id)
                    summary["ran"].append(job.id)
                    log(f"done {job.id} ({time.time() - started:.1f} s)")
                    bar.update(1)
    finally:
        for job, proc, *_ in running.values():  # interrupted: stop only the processes started here
            proc.terminate()
        for job, proc, _, _, out in running.values():
            proc.wait()
            out.close()
        bar.close()
    return summary


def _execute_in_process(jobs: list[Job], done: set[str], pending: list[Job], summary: dict[str, Any],
                        log: Callable[[str], None]) -> dict[str, Any]:
    for job in tqdm(pending, desc="study", unit="job"):
        if any(d in summary["failed"] or d not in done for d in job.deps):
            summary["failed"][job.id] = "a job it needs failed"
            continue
        log(f"start {job.id}")
        started, code = time.time(), 0
        for command in job.commands:
            code = importlib.import_module(command[2]).main(command[3:])  # [python, -m, module, args...]
            if code != 0:
                break
        if code != 0:
            summary["failed"][job.id] = f"exit {code} (its error is printed above)"
            log(f"failed {job.id}: {summary['failed'][job.id]}")
            continue
        if job.on_done is not None:
            job.on_done(time.time() - started)
        done.add(job.id)
        summary["ran"].append(job.id)
        log(f"done {job.id} ({time.time() - started:.1f} s)")
    return summary
