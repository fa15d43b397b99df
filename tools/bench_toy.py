"""Toy-world throughput at several resolutions, as a Markdown table for docs/benchmarks.md.

    python tools/bench_toy.py [--n 300] [--sizes 64x128 128x256 256x512]

Each row renders `n` training scenes through `ToyReader` on one thread pinned to one core
(`synthdata.data.readers.toy.benchmark`); the CPU-second rate ignores time other jobs took.
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    from synthdata.core.runtime import benchmark_allocator, cpu_model
    from synthdata.data.readers.toy import benchmark

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300, help="scenes per resolution")
    parser.add_argument("--sizes", nargs="+", default=["64x128", "128x256", "256x512"], help="HxW")
    args = parser.parse_args(argv)
    print(f"toy world, {args.n} scenes per row, 1 thread, 1 core ({cpu_model()}, {benchmark_allocator()})\n")
    print("| resolution | triplets/s (wall clock) | triplets/s (per CPU second) |")
    print("| --- | ---: | ---: |")
    for size in args.sizes:
        height, width = (int(v) for v in size.lower().split("x"))
        wall, cpu = benchmark(height, width, args.n)
        print(f"| {height}x{width} | {wall:.0f} | {cpu:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
