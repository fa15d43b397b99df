"""Production as users run it: `synthdata produce` in 1 and 2 processes, and peak memory of a
run 10x larger, with stages of random weights at the recipe's size (speed does not depend on them).

    python tools/bench_produce_scaling.py [num_samples=128] [shard_size=32] [precision=bf16]
        [scale=10] [recipe=toy] [key.sub=value ...]

Runs, each a fresh command (rates = samples / seconds of produce's summary line, which leaves
out start-up):
1 process x 1 thread, 1 process x 2 threads, 2 processes x 1 thread (torchrun, gloo), and
1 process x 2 threads at `scale` times the samples. Peak memory is the largest sum of RSS over
the command's process tree, sampled every 0.1 s.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from synthdata.core.recipe_loading import parse_command_line  # noqa: E402

ARGUMENTS = {"num_samples": 128, "shard_size": 32, "precision": "bf16", "scale": 10}
SUMMARY = re.compile(r"wrote (\d+) samples .* in ([\d.]+) s \([\d.]+ samples/s, (\d+) processes\)")


def run(command: list[str], threads: int) -> tuple[float, int, float]:
    """(samples/s from the summary line, processes, peak summed RSS in MiB) of one command."""
    import psutil

    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    parent, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            tree = [parent, *parent.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.1)
    out = proc.stdout.read()
    match = SUMMARY.search(out)
    if proc.returncode != 0 or match is None:
        raise SystemExit(f"{' '.join(command)} failed:\n{out[-3000:]}")
    samples, seconds = int(match.group(1)), float(match.group(2))
    return samples / seconds, int(match.group(3)), peak / 2**20


def main(argv: list[str]) -> int:
    from bench_produce import random_run_dir

    recipe, args = parse_command_line(argv, ARGUMENTS)
    n, scale = int(args["num_samples"]), int(args["scale"])
    overrides = [a for a in argv if a.split("=")[0] not in ARGUMENTS]
    print(f"produce scaling: {recipe.name} at {recipe.data.height}x{recipe.data.width}, image ngf "
          f"{recipe.stages.image.ngf}, precision {args['precision']}, batch {recipe.produce.batch_size}")
    print("| run | samples | samples/s | peak RSS (MiB, all processes) |")
    print("| --- | --- | --- | --- |")
    produce = str(ROOT / "synthdata" / "produce.py")
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = random_run_dir(recipe, Path(tmp) / "run")

        def command(launcher: list[str], samples: int, name: str) -> list[str]:
            return [*launcher, produce, *overrides, f"run_dir={run_dir}", f"produce.num_samples={samples}",
                    f"produce.shard_size={args['shard_size']}", f"produce.mixed_precision={args['precision']}",
                    f"produce.out={Path(tmp) / name}"]

        single = [sys.executable]
        pair = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
        rows = [("1 process x 1 thread", single, 1, n), ("1 process x 2 threads", single, 2, n),
                ("2 processes x 1 thread", pair, 1, n), (f"1 process x 2 threads, {scale}x samples", single, 2, scale * n)]
        for i, (name, launcher, threads, samples) in enumerate(rows):
            rate, procs, peak = run(command(launcher, samples, f"out{i}"), threads)
            print(f"| {name} | {samples} | {rate:.2f} | {peak:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
