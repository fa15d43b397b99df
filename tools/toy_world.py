"""A picture of the toy world's scenes: image | layout | depth rows (its speed: tools/bench_toy.py).

    python tools/toy_world.py scenes.png [--n 16] [--height 128 --width 256] [--split train]
"""

from __future__ import annotations

import argparse

from synthdata.core.recipe import DataConfig
from synthdata.core.visualize import save_grid
from synthdata.data.readers.toy import SPLITS, ToyReader


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="the PNG to write")
    parser.add_argument("--n", type=int, default=16, help="scenes")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--split", default="train", choices=SPLITS)
    args = parser.parse_args(argv)
    reader = ToyReader(DataConfig(height=args.height, width=args.width, split_sizes={args.split: args.n}), args.split)
    path = save_grid([reader[i] for i in range(args.n)], reader.classes, args.out, max_rows=args.n)
    print(f"toy world: {args.n} {args.split} scenes at {args.height}x{args.width} -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
