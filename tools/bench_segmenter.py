"""Segmenter training step speed, channels_last vs contiguous memory layout, interleaved rounds.

    python tools/bench_segmenter.py recipe=particles data.root=PATH [steps=40] [warmup=3] [rounds=3] [key.sub=value ...]

Builds the recipe's segmentation run (its data, crops, batch, precision) in a temporary run dir
and times `steps` training steps after `warmup`, for `seg.model.channels_last=false` then `true`,
`rounds` times, so a machine whose speed drifts affects both alike. Prints per round the step/s
(wall) and CPU seconds per step (user + sys of this process), then the medians. Set
OMP_NUM_THREADS to fix the thread count.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthdata.core.entry import run_main  # noqa: E402
from synthdata.core.recipe_loading import parse_command_line  # noqa: E402
from synthdata.core.runtime import cpu_model, make_accelerator  # noqa: E402
from synthdata.segmentation.training import SegmentationRun  # noqa: E402

ARGUMENTS = {"steps": 40, "warmup": 3, "rounds": 3}


def time_steps(argv: list[str], *, channels_last: bool, steps: int, warmup: int) -> tuple[float, float]:
    """(steps per second, CPU seconds per step) of `steps` training steps after `warmup`."""
    recipe, _ = parse_command_line(argv + [f"seg.steps={steps + warmup}", "seg.val_every=0", "seg.checkpoint_every=0",
                                           f"seg.model.channels_last={str(channels_last).lower()}"], ARGUMENTS)
    accelerator = make_accelerator(mixed_precision=recipe.seg.mixed_precision)
    with tempfile.TemporaryDirectory() as tmp:
        run = SegmentationRun(recipe, Path(tmp), accelerator)
        run.model.train()
        for n, batch in enumerate(run.batches(0)):
            if n == warmup:
                wall, cpu = time.perf_counter(), sum(os.times()[:2])
            run.train_step(batch)
            if n + 1 == warmup + steps:
                break
        return steps / (time.perf_counter() - wall), (sum(os.times()[:2]) - cpu) / steps


def main(argv: list[str]) -> int:
    recipe, args = parse_command_line(argv, ARGUMENTS)
    steps, warmup = int(args["steps"]), int(args["warmup"])
    print(f"{cpu_model()}, {os.environ.get('OMP_NUM_THREADS', 'all')} thread(s), recipe {recipe.name}, "
          f"{steps} timed steps after {warmup}")
    results: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for r in range(int(args["rounds"])):
        for channels_last in (False, True):
            res = time_steps(argv, channels_last=channels_last, steps=steps, warmup=warmup)
            results[channels_last].append(res)
            print(f"round {r}: channels_last={channels_last!s:5} {res[0]:.3f} step/s, {res[1]:.3f} CPU s/step", flush=True)
    med = {k: (statistics.median(v[0] for v in vs), statistics.median(v[1] for v in vs)) for k, vs in results.items()}
    for k, (sps, cps) in med.items():
        print(f"median channels_last={k!s:5} {sps:.3f} step/s, {cps:.3f} CPU s/step")
    print(f"channels_last speed-up: {med[True][0] / med[False][0]:.2f}x step/s, {med[False][1] / med[True][1]:.2f}x CPU time")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))  # a bad key: one line, exit 2
