"""Issue 34, orphaned workers: every study job holds a lock in its own folder while it runs, passed to
its process, so a worker left running by a killed study keeps it; a rerun waits for that process
instead of starting a second copy of the job beside it."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from synthdata.experiments.jobs import execute

# a stand-in for a job's command (`python -m fake_job OUT SECONDS`): one line when it starts and one when it ends
FAKE_JOB = """import os, sys, time
def main(argv):
    out, seconds = argv[0], float(argv[1])
    with open(out, "a") as f:
        f.write(f"start {os.getpid()} {time.time()}\\n")
    time.sleep(seconds)
    with open(out, "a") as f:
        f.write(f"end {os.getpid()} {time.time()}\\n")
    return 0
if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
"""

HOLD = """import sys, time
from pathlib import Path
from synthdata.core.folder_lock import try_lock
fd, _ = try_lock(Path(sys.argv[1]))
print("held", flush=True)
time.sleep(float(sys.argv[2]))
Path(sys.argv[3]).write_text(str(time.time()))  # the lock goes when this process ends, just after
"""

# a study runner with one job, killed by the test while the job's process runs
RUNNER = """import json, sys
from pathlib import Path
from synthdata.experiments.jobs import Job, execute
job = Job("cells/real-only/seed-0", [json.loads(sys.argv[1])], done_file=Path(sys.argv[2]), lock=Path(sys.argv[3]))
execute([job], workers=2, threads=1, log_dir=Path(sys.argv[4]), log=print)
"""


@pytest.fixture
def fake_job(tmp_path, monkeypatch):
    """(the cell job of real only seed 0 of a study plan, with `python -m fake_job OUT SECONDS` as its
    command: `make(seconds)`; OUT)."""
    (tmp_path / "fake_job.py").write_text(FAKE_JOB)
    monkeypatch.syspath_prepend(str(tmp_path))  # in-process jobs import it
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    return tmp_path / "job.out"


def lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()]


def test_each_job_locks_its_own_folder(tmp_path, plan_for):
    plan = plan_for(tmp_path, {"half": {"seg.synthetic_ratio": 0.5}})
    locks = {job.id: job.lock for job in plan.jobs}
    assert len(set(locks.values())) == len(locks)  # one lock per job
    for cell in plan.cells:
        assert locks[f"cells/{cell.run_dir.parent.name}/{cell.run_dir.name}"] == cell.run_dir / ".job.lock"
    (gkey,) = plan.generators
    for stage in plan.generators[gkey]["stages"]:  # a generator run's stages train side by side in its folder
        assert locks[f"generators/{gkey}/{stage}"] == plan.run_dir / "generators" / gkey / f".job-{stage}.lock"
    (pkey,) = plan.productions
    assert locks[f"productions/{pkey}"] == plan.run_dir / "productions" / pkey / ".job.lock"


@pytest.mark.parametrize("workers", [1, 2])
def test_a_job_whose_lock_a_live_process_holds_waits_for_it(tmp_path, capsys, plan_for, fake_job, workers):
    plan = plan_for(tmp_path, {"half": {"seg.synthetic_ratio": 0.5}})
    job = next(j for j in plan.jobs if j.id == "cells/real-only/seed-0")
    job = dataclasses.replace(job, commands=[[sys.executable, "-m", "fake_job", str(fake_job), "0"]],
                              on_done=lambda seconds: job.done_file.write_text("{}"))
    ended = tmp_path / "holder.ended"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(job.lock), "1.5", str(ended)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        log: list[str] = []
        summary = execute([job], workers=workers, threads=1, log_dir=tmp_path / "logs", log=log.append)
    finally:
        holder.kill()
        holder.wait()
    assert summary["ran"] == [job.id] and summary["failed"] == {}
    assert f"pid {holder.pid}, started " in summary["waited"][job.id]
    (start,) = [line for line in lines(fake_job) if line[0] == "start"]  # run once
    assert float(start[2]) >= float(ended.read_text())  # once the holder had ended
    said = f"study: {job.id} is running in another process (pid {holder.pid}, started "
    assert capsys.readouterr().err.count(said) == 1 and sum(said in line for line in log) == 1


def test_a_rerun_after_a_killed_study_waits_for_its_orphaned_worker(tmp_path, plan_for, fake_job):
    """SIGKILL of the study's own pid leaves its worker running; the rerun must not start a second
    copy of that job beside it."""
    plan = plan_for(tmp_path, {"half": {"seg.synthetic_ratio": 0.5}})
    job = next(j for j in plan.jobs if j.id == "cells/real-only/seed-0")
    command = [sys.executable, "-m", "fake_job", str(fake_job), "3"]
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, json.dumps(command), str(job.done_file), str(job.lock),
                               str(tmp_path / "logs")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    orphan = None
    try:
        deadline = time.time() + 60
        while not (fake_job.is_file() and fake_job.read_text()):
            assert time.time() < deadline and runner.poll() is None
            time.sleep(0.05)
        orphan = int(lines(fake_job)[0][1])
        runner.send_signal(signal.SIGKILL)  # the study dies; its worker runs on
        runner.wait()
        os.kill(orphan, 0)  # still alive
        job = dataclasses.replace(job, commands=[command], on_done=lambda seconds: job.done_file.write_text("{}"))
        summary = execute([job], workers=2, threads=1, log_dir=tmp_path / "logs", log=lambda line: None)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        if orphan is not None:
            try:
                os.kill(orphan, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert summary["ran"] == [job.id] and f"pid {orphan}, {job.id} of the study in pid {runner.pid}" in \
        summary["waited"][job.id]
    events = lines(fake_job)
    assert [e[0] for e in events] == ["start", "end", "start", "end"]  # one after the other, never side by side
    assert events[0][1] == events[1][1] == str(orphan) and events[2][1] != str(orphan)
    assert float(events[2][2]) >= float(events[1][2])


def test_jobs_run_in_this_process_keep_the_threads_chosen_when_the_run_began(tmp_path, monkeypatch, plan_for):
    """One worker runs jobs in this process (the demo): threads are chosen once, so a job that
    starts while something else keeps a core busy trains with the same threads as the first."""
    from synthdata.core import runtime

    (tmp_path / "threads_job.py").write_text(
        "import os\nfrom synthdata.core.runtime import configure_threads\n"
        "def main(argv):\n    open(argv[0], 'a').write(f'{configure_threads()} {os.environ[\"OMP_NUM_THREADS\"]}\\n')\n"
        "    return 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    loads = iter([0.0] + [1.0] * 10)  # idle when the run begins, one core busy after
    monkeypatch.setattr(runtime, "busy_elsewhere", lambda: next(loads))
    plan = plan_for(tmp_path, {"half": {"seg.synthetic_ratio": 0.5}})
    out = tmp_path / "threads.out"
    jobs = [dataclasses.replace(j, commands=[[sys.executable, "-m", "threads_job", str(out)]], deps=[], on_done=None)
            for j in plan.jobs if j.id.startswith("cells/real-only/")][:2]
    before = torch.get_num_threads()
    try:
        summary = execute(jobs, workers=1, threads=1, log_dir=tmp_path / "logs", log=lambda line: None)
    finally:
        torch.set_num_threads(before)
    assert summary["failed"] == {} and len(summary["ran"]) == 2
    assert out.read_text().split("\n")[:2] == ["2 2", "2 2"]
    assert "OMP_NUM_THREADS" not in os.environ
