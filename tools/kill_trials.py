"""Kill a study at random moments and rerun it: are its results those of an uninterrupted study?

    python tools/kill_trials.py out=DIR [trials=5] [seed=0] [recipe=toy] [key.sub=value ...]

Runs the study once without interruption (DIR/straight), then `trials` times: starts the same
study in DIR/trial-N, sends SIGKILL to the study's process at a moment drawn uniformly from
(1 s, 0.8 x the uninterrupted run's wall time) (its running jobs live on, as after a crash of the
study alone), reruns the same command to the end and compares every cell's result.json with the
uninterrupted one on what a result is (mIoU, per-class and per-image IoU, pixel accuracy, steps,
sample counts) and the segmenter's weights. Prints a table, then one line: how many trials matched.
The study is a tiny toy one (real only, copy-paste composites, GAN layouts + SPADE images; 2 seeds)
unless `key=value` settings say otherwise; `study.variants` may name another variants file.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# the checkpoint file's sha256 is not compared: it holds the recipe, whose shard paths name the run dir
COMPARED = ("miou", "pixel_accuracy", "per_class_iou", "per_image", "steps", "source_counts")
VARIANTS = {"copy-paste": {"seg.synthetic_ratio": 0.5, "produce.layouts": "real", "produce.copy_paste": 3,
                           "stages.image.arch": "composite"},
            "gan": {"seg.synthetic_ratio": 0.5}}
TINY = [
    "data.height=32", "data.width=64", "data.split_sizes={train: 16, val: 8, test: 8}",
    "train.batch_size=2", "train.mixed_precision=no", "train.steps=40", "train.checkpoint_every=10",
    "stages.layout.ngf=8", "stages.layout.ndf=8", "stages.depth.ngf=8", "stages.depth.ndf=8",
    "stages.image.ngf=8", "stages.image.ndf=8", "produce.num_samples=32", "produce.shard_size=8",
    "produce.batch_size=8", "seg.model.encoder_depth=3", "seg.model.decoder_channels=[16,8,8]",
    "seg.batch_size=4", "seg.steps=60", "seg.val_every=0", "seg.checkpoint_every=20", "seg.mixed_precision=no",
    "study.seeds=2", "study.workers=2", "study.threads=1", "study.bootstrap=200",
]


def study_command(run_dir: Path, settings: list[str]) -> list[str]:
    return [sys.executable, "-m", "synthdata.study", *settings, f"run_dir={run_dir}"]


def weights_digest(checkpoint: Path) -> str:
    """sha256 of a segmenter checkpoint's weights (every tensor's bytes, in key order)."""
    import torch

    digest = hashlib.sha256()
    for key, tensor in sorted(torch.load(checkpoint, weights_only=True)["model"].items()):
        digest.update(key.encode())
        digest.update(tensor.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def results(run_dir: Path) -> dict[str, dict]:
    """Per cell: its scores and counts (result.json) and its segmenter's weights."""
    out = {}
    for path in sorted(run_dir.glob("cells/*/seed-*/result.json")):
        record = json.loads(path.read_text())
        out[str(path.relative_to(run_dir))] = {k: record.get(k) for k in COMPARED} | {
            "weights": weights_digest(path.parent / "checkpoints" / "segmenter" / "latest.pt")}
    return out


def run(command: list[str], log: Path, kill_after: float | None = None) -> tuple[float, bool]:
    """(wall seconds, killed) of one study process; output to `log`."""
    with open(log, "a") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=kill_after)
            return time.perf_counter() - start, False
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)  # the study alone: its workers are orphaned, as after a crash
            proc.wait()
            return time.perf_counter() - start, True


def main(argv: list[str]) -> int:
    args = dict(token.split("=", 1) for token in argv if "=" in token)
    if "out" not in args:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    out, trials, rng = Path(args.pop("out")), int(args.pop("trials", 5)), random.Random(int(args.pop("seed", 0)))
    out.mkdir(parents=True, exist_ok=True)
    variants = out / "variants.yaml"
    variants.write_text(json.dumps({"variants": VARIANTS}))  # JSON is YAML
    settings = [f"recipe={args.pop('recipe', 'toy')}", f"study.variants={variants}", *TINY]
    settings += [f"{k}={v}" for k, v in args.items()]
    straight_dir = out / "straight"
    wall, _ = run(study_command(straight_dir, settings), out / "straight.log")
    want = results(straight_dir)
    print(f"uninterrupted: {len(want)} cells in {wall:.0f} s")
    print("| trial | killed at s | rerun s | cells | identical |")
    print("| --- | --- | --- | --- | --- |")
    matched = 0
    for trial in range(1, trials + 1):
        run_dir, log = out / f"trial-{trial}", out / f"trial-{trial}.log"
        at = rng.uniform(1.0, 0.8 * wall)  # the wall time varies with load: leave room to kill before the end
        _, killed = run(study_command(run_dir, settings), log, kill_after=at)
        rerun, _ = run(study_command(run_dir, settings), log)
        got = results(run_dir)
        same = [cell for cell in want if got.get(cell) == want[cell]]
        ok = len(same) == len(want) == len(got)
        matched += ok
        print(f"| {trial} | {at:.1f}{'' if killed else ' (finished first)'} | {rerun:.0f} | {len(got)} | "
              f"{len(same)} of {len(want)}{'' if ok else ' DIFFER'} |", flush=True)
    print(f"kill trials: {matched} of {trials} reruns gave every cell's result of the uninterrupted study")
    return 0 if matched == trials else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
