"""`accelerate launch synthdata/train.py recipe=R stage=layout|depth|image run_dir=DIR [train.*=...]`:
train one generator stage (also `python -m synthdata.train`, `synthdata train`).

Checkpoints go to RUN_DIR/checkpoints/{stage}/ (portable `latest.pt` + Accelerate `state/`);
rerunning the same command resumes. The training loop is `synthdata.generation.training`.
"""

from __future__ import annotations

import sys
from dataclasses import MISSING
from pathlib import Path

from synthdata.core.entry import run_main
from synthdata.core.folder_lock import process_lock
from synthdata.core.recipe_loading import default_run_dir, parse_command_line
from synthdata.core.runtime import make_accelerator
from synthdata.generation.stages import check_stage
from synthdata.generation.training import TrainingDiverged, train_stage


def _main(argv: list[str]) -> int:
    recipe, args = parse_command_line(argv, {"stage": MISSING, "run_dir": None})
    run_dir = Path(str(args["run_dir"])) if args["run_dir"] else default_run_dir(recipe)
    accelerator = make_accelerator(mixed_precision=recipe.train.mixed_precision, log_with=recipe.log_with,
                                   log_dir=run_dir / "logs")
    stage = check_stage(args["stage"])
    try:  # one run per stage: two would replace each other's checkpoints (a study trains other stages beside)
        with process_lock(accelerator, run_dir, f"another synthdata train stage={stage}", f".lock-{stage}"):
            train_stage(recipe, stage=stage, run_dir=run_dir, accelerator=accelerator)
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv)

