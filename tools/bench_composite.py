"""Composite texturing throughput on toy layouts, as a Markdown table for docs/benchmarks.md.

    OMP_NUM_THREADS=1 python tools/bench_composite.py [--bank 64] [--n 200] [--sizes 128x256 256x512]

Per resolution: builds a segment bank from `--bank` toy training scenes (timed once; rendering
the scenes is not counted), then, with the bank freshly loaded from its file for each blend,
textures the layouts of `--n` toy validation scenes (real layouts, so every class occurs) with
`composite(..., depth=True)` for each blend, seeds `derive_seed(0, 0, i)`, on one thread (torch
and OpenCV set to 1 thread). A warm-up pass over the same layouts first fills the bank's
segment cache, as a long production run does; the cold pass is reported too. Rates are samples
per CPU second of this process (`time.process_time`), so time other jobs took is not counted;
layout reading is outside the timed region.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import torch

from synthdata.core.recipe import DataConfig
from synthdata.core.runtime import benchmark_allocator, cpu_model
from synthdata.core.seeding import derive_seed
from synthdata.data.readers import make_reader
from synthdata.texturing.bank_building import build_bank
from synthdata.texturing.composite import composite
from synthdata.texturing.segment_bank import load_bank


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bank", type=int, default=64, help="toy training scenes in the bank")
    parser.add_argument("--n", type=int, default=200, help="layouts textured per blend")
    parser.add_argument("--sizes", nargs="+", default=["128x256", "256x512"], help="HxW")
    parser.add_argument("--blends", nargs="+", default=["none", "gaussian"])
    args = parser.parse_args(argv)
    threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        _run(args)
    finally:  # leave the calling process as it was (the smoke test runs this in-process)
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv_threads)
    return 0


def _run(args: argparse.Namespace) -> None:
    print(f"composite texturing: bank of {args.bank} toy scenes, {args.n} toy val layouts, depth on, "
          f"1 thread ({cpu_model()}, {benchmark_allocator()})\n")
    print("| resolution | bank build (s CPU) | bank segments | bank MB (npz) | blend | components/sample "
          "| samples/s per core (cold) | samples/s per core (warm) |")
    print("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |")
    for size in args.sizes:
        height, width = (int(v) for v in size.lower().split("x"))
        cfg = DataConfig(reader="toy", height=height, width=width,
                         split_sizes={"train": args.bank, "val": args.n, "test": 1})
        reader = make_reader(cfg, "train")
        scenes = list(reader)  # rendering the toy world is not part of the bank's cost
        start = time.process_time()
        bank = build_bank(scenes, reader.classes, progress=False)
        build = time.process_time() - start
        layouts = [s["layout"] for s in make_reader(cfg, "val")]
        with tempfile.TemporaryDirectory() as tmp:
            path = bank.save(Path(tmp) / "bank.npz")
            megabytes = path.stat().st_size / 1e6
            for blend in args.blends:
                bank = load_bank(path)  # a fresh bank: its segment cache starts empty
                rates = []
                for _ in ("cold", "warm"):
                    comps = 0
                    start = time.process_time()
                    for i, layout in enumerate(layouts):
                        out = composite(layout, bank, derive_seed(0, 0, i), blend=blend, depth=True)
                        comps += len(out["meta"]["sources"])
                    rates.append(len(layouts) / max(time.process_time() - start, 1e-9))
                print(f"| {height}x{width} | {build:.1f} | {len(bank)} | {megabytes:.1f} | {blend} | "
                      f"{comps / len(layouts):.0f} | {rates[0]:.1f} | {rates[1]:.1f} |", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
