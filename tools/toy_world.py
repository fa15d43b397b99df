"""The toy world from the command line: its rendering speed and a picture of its scenes.

    python tools/toy_world.py --benchmark [--n 500] [--height 128 --width 256]
    python tools/toy_world.py --grid scenes.png [--n 16] [--split train]

`--benchmark` renders scenes through `ToyReader` on one thread pinned to one core
(`synthdata.data.readers.toy.benchmark`); `--grid` writes image | layout | depth rows.
"""

from __future__ import annotations

import argparse

from synthdata.core.recipe import DataConfig
from synthdata.core.visualize import save_grid
from synthdata.data.readers.toy import SPLITS, ToyReader, benchmark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--benchmark", action="store_true", help="measure triplets/s on one thread")
    parser.add_argument("--grid", help="write a PNG of --n scenes (image | layout | depth rows)")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--n", type=int, default=None, help="scenes (default 500 / 16 for --grid)")
    parser.add_argument("--split", default="train", choices=SPLITS)
    args = parser.parse_args(argv)
    if not args.benchmark and not args.grid:
        parser.error("nothing to do: pass --benchmark and/or --grid PATH")
    if args.benchmark:
        n = args.n or 500
        wall, cpu = benchmark(args.height, args.width, n)
        print(f"toy world: {n} triplets at {args.height}x{args.width}: {wall:.0f} triplets/s wall clock, "
              f"{cpu:.0f} per CPU second (1 thread, 1 core)")
    if args.grid:
        n = args.n or 16
        reader = ToyReader(DataConfig(height=args.height, width=args.width, split_sizes={args.split: n}),
                           args.split)
        path = save_grid([reader[i] for i in range(n)], reader.classes, args.grid, max_rows=n)
        print(f"toy world: {n} {args.split} scenes at {args.height}x{args.width} -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
