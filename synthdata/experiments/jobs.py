"""Running a study's jobs (generator runs, productions, segmenter cells): as subprocesses,
`study.workers` at a time with `study.threads` threads each (one GPU each, round robin, where
there are GPUs), or one after another in this process; finished jobs are skipped on a rerun. A
running job holds a lock in its folder (`Job.lock`, passed to its process): a job whose lock a
live process holds (a worker left running by a killed study) is waited for, never started twice.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

import synthdata
from synthdata.core.folder_lock import describe_holder, try_lock
from synthdata.core.runtime import threads_held
from synthdata.experiments.cluster import JobCommands, SubmittedJob


@dataclass
class Job:
    """Commands run one after another in one worker slot once `deps` are done."""

    id: str
    commands: list[list[str]]
    deps: list[str] = field(default_factory=list)
    done_file: Path | None = None
    on_done: Callable[[float], None] | None = None
    lock: Path | None = None  # held while the job runs, by this process and the job's processes

    def done(self) -> bool:
        return self.done_file is not None and self.done_file.is_file()


class _Locks:
    """Each job's lock (`Job.lock`), taken before it starts and released once it is recorded. A
    lock held by another process means the job is running there (a worker of a killed study runs
    on: the kernel drops the lock only when it ends): the job waits, said once on stderr and in the log."""

    def __init__(self, log: Callable[[str], None]):
        self.log, self.fds, self.waited = log, {}, {}

    def take(self, job: Job) -> bool:
        if job.lock is None:
            return True
        fd, holder = try_lock(job.lock)
        if fd is None:
            if job.id not in self.waited:
                self.waited[job.id] = holder
                line = (f"study: {job.id} is running in another process ({holder}; {job.lock}), left running by "
                        "a study that was stopped? Waiting for it to end before running it here")
                self.log(line)
                tqdm.write(line, file=sys.stderr)
            return False
        if job.id in self.waited:
            self.log(f"{job.id}: the other process ended")
        self.fds[job.id] = fd
        return True

    def fd(self, job: Job) -> tuple[int, ...]:
        return (self.fds[job.id],) if job.id in self.fds else ()

    def describe(self, job: Job, pid: int) -> None:
        if job.id in self.fds:
            describe_holder(self.fds[job.id], f"pid {pid}, {job.id} of the study in pid {os.getpid()}")

    def release(self, job: Job) -> None:
        fd = self.fds.pop(job.id, None)
        if fd is not None:
            os.close(fd)

    def release_all(self) -> None:
        for job_id in list(self.fds):
            os.close(self.fds.pop(job_id))


def child_env(threads: int, slot: int | None) -> dict[str, str]:
    """A job's environment: its threads, this synthdata first on the path, a GPU by `slot` (None:
    the job runs where its scheduler gives it devices)."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(threads)
    root = str(Path(synthdata.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    if slot is not None and torch.cuda.is_available() and "CUDA_VISIBLE_DEVICES" not in os.environ:
        env["CUDA_VISIBLE_DEVICES"] = str(slot % torch.cuda.device_count())
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)  # each job is its own single-process run
    return env


def execute(jobs: list[Job], *, workers: int, threads: int, log_dir: Path, log: Callable[[str], None],
            executor: Any = None) -> dict[str, Any]:
    """Run the jobs that are not done, `workers` at a time, respecting `deps`. Returns
    `{"ran": [...], "skipped": [...], "failed": {id: reason}, "waited": {id: holder}}`; a failed job
    fails its dependants; "waited": jobs found running in another process, run here once it ended.
    `executor`: a submitit executor (`experiments.cluster`) that runs each job, instead of worker
    processes here."""
    log_dir.mkdir(parents=True, exist_ok=True)
    done = {j.id for j in jobs if j.done()}
    pending = [j for j in jobs if j.id not in done]
    locks = _Locks(log)
    summary: dict[str, Any] = {"ran": [], "skipped": sorted(done), "failed": {}, "waited": locks.waited}

    if workers == 1 and executor is None:  # one at a time: in this process, as the demo chains commands
        try:
            with threads_held():  # chosen once for the whole run, not again by each job
                return _execute_in_process(done, pending, summary, log, locks)
        finally:
            locks.release_all()

    running: dict[int, tuple[Job, subprocess.Popen, int, float, Any]] = {}  # slot -> job, process, command, start
    bar = tqdm(total=len(pending), desc="study", unit="job")

    def start(slot: int, job: Job, index: int, started: float) -> None:
        if executor is not None:  # the whole job is one submitted job; its lock stays with this process
            log_path = log_dir / f"{job.id.replace('/', '__')}.log"
            submitted = SubmittedJob(executor.submit(JobCommands(job.commands, child_env(threads, None), log_path)))
            running[slot] = (job, submitted, len(job.commands) - 1, started, log_path.parent)
            log(f"submitted {job.id} as job {submitted.pid}")
            return
        out = open(log_dir / f"{job.id.replace('/', '__')}.log", "a")
        out.write(f"$ {' '.join(job.commands[index])}\n")
        out.flush()
        # the job's process holds its lock too: if this process dies, the lock lives as long as the job
        proc = subprocess.Popen(job.commands[index], stdout=out, stderr=subprocess.STDOUT, env=child_env(threads, slot),
                                pass_fds=locks.fd(job))
        locks.describe(job, proc.pid)
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
                if free and all(d in done for d in job.deps) and locks.take(job):
                    pending.remove(job)
                    if job.done():  # finished meanwhile by the process that held its lock
                        locks.release(job)
                        done.add(job.id)
                        summary["skipped"].append(job.id)
                        bar.update(1)
                        continue
                    log(f"start {job.id}")
                    start(free[0], job, 0, time.time())
            time.sleep(0.2)
            for slot, (job, proc, index, started, out) in list(running.items()):
                code = proc.poll()
                if code is None:
                    continue
                if executor is None:
                    out.close()
                del running[slot]
                if code != 0:
                    locks.release(job)
                    summary["failed"][job.id] = f"exit {code}, see {log_dir / (job.id.replace('/', '__') + '.log')}"
                    log(f"failed {job.id}: {summary['failed'][job.id]}")
                    bar.update(1)
                elif index + 1 < len(job.commands):
                    start(slot, job, index + 1, started)
                else:
                    try:
                        if job.on_done is not None:
                            job.on_done(time.time() - started)
                    finally:
                        locks.release(job)
                    done.add(job.id)
                    summary["ran"].append(job.id)
                    log(f"done {job.id} ({time.time() - started:.1f} s)")
                    bar.update(1)
    finally:
        for job, proc, *_ in running.values():  # interrupted: stop only the processes started here
            proc.terminate()
        for job, proc, _, _, out in running.values():
            proc.wait()
            if executor is None:
                out.close()
        locks.release_all()
        bar.close()
    return summary


def _execute_in_process(done: set[str], pending: list[Job], summary: dict[str, Any], log: Callable[[str], None],
                        locks: _Locks) -> dict[str, Any]:
    """The jobs in order, in this process; one whose lock another process holds waits (the jobs
    after it that do not need it run meanwhile)."""
    bar = tqdm(total=len(pending), desc="study", unit="job")
    while pending:
        job = None
        for candidate in list(pending):
            if any(d in summary["failed"] for d in candidate.deps):
                pending.remove(candidate)
                summary["failed"][candidate.id] = "a job it needs failed"
                bar.update(1)
            elif all(d in done for d in candidate.deps) and locks.take(candidate):
                job = candidate
                break
        if job is None:
            if pending and not any(j.id in locks.waited and j.id not in locks.fds for j in pending):
                for stuck in pending:  # nothing runs and nothing waits: what they need never ran
                    summary["failed"][stuck.id] = "a job it needs failed"
                break
            time.sleep(1.0)  # a job runs in another process
            continue
        pending.remove(job)
        bar.update(1)
        try:
            if job.done():  # finished meanwhile by the process that held its lock
                done.add(job.id)
                summary["skipped"].append(job.id)
                continue
            _run_in_process(job, done, summary, log)
        finally:
            locks.release(job)
    bar.close()
    return summary


def _run_in_process(job: Job, done: set[str], summary: dict[str, Any], log: Callable[[str], None]) -> None:
    log(f"start {job.id}")
    started, code = time.time(), 0
    for command in job.commands:
        code = importlib.import_module(command[2]).main(command[3:])  # [python, -m, module, args...]
        if code != 0:
            break
    if code != 0:
        summary["failed"][job.id] = f"exit {code} (its error is printed above)"
        log(f"failed {job.id}: {summary['failed'][job.id]}")
        return
    if job.on_done is not None:
        job.on_done(time.time() - started)
    done.add(job.id)
    summary["ran"].append(job.id)
    log(f"done {job.id} ({time.time() - started:.1f} s)")
