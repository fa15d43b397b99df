"""`accelerate launch synthdata/produce.py recipe=R run_dir=DIR [produce.*=...]`: sample
(layout, depth, image) triplets from trained stages into WebDataset shards under RUN_DIR/shards
(also `python -m synthdata.produce`, `synthdata produce`). Resumable and identical for any
process count; the production loop is `synthdata.generation.production`. Array jobs (a SLURM
array, no process group): `job=I/N` writes array job I's shards, then one `finalize=true` run
checks every shard and writes the manifest; the union is byte-identical to one run.
"""

from __future__ import annotations

import sys
from pathlib import Path

from synthdata import api
from synthdata.core.entry import run_main
from synthdata.core.recipe_loading import default_run_dir, parse_command_line
from synthdata.generation.production import RejectionError


def _main(argv: list[str]) -> int:
    recipe, args = parse_command_line(argv, {"run_dir": None, "max_shards": None, "job": None, "finalize": False})
    run_dir = Path(args["run_dir"]) if args["run_dir"] else default_run_dir(recipe)
    try:
        api.produce_shards(recipe, run_dir, max_shards=args["max_shards"], job=args["job"], finalize=args["finalize"])
    except RejectionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv)

