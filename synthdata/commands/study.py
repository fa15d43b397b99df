"""`synthdata study recipe=R run_dir=DIR study.variants=FILE|NAME [study.seeds=3 study.workers=2 ...]`:
does synthetic data pay for this dataset? The real-only baseline and named variants x seeds,
shared generator and production runs, paired intervals and a verdict per variant in
DIR/study/report.md (also `python -m synthdata.study`, `accelerate launch synthdata/study.py`).
Resumable: a rerun skips finished cells. The planner and runner are `synthdata.experiments.study`.
"""

from __future__ import annotations

import sys
from dataclasses import MISSING
from pathlib import Path

from synthdata.core.entry import run_main
from synthdata.core.recipe_loading import parse_command_line
from synthdata.experiments.study import run_study


def _main(argv: list[str]) -> int:
    recipe, args = parse_command_line(argv, {"run_dir": MISSING})
    summary = run_study(recipe, Path(str(args["run_dir"])))
    for line in summary["verdicts"]:
        print(f"  {line}")
    failed = summary["failed"]
    print(f"study: ran {len(summary['ran'])} jobs, {len(summary['skipped'])} already done, {len(failed)} failed"
          f" -> {summary['report']}")
    for job, reason in failed.items():
        print(f"  failed {job}: {reason}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv)  # ConfigError, DatasetError, CheckpointError -> one line, exit 2

