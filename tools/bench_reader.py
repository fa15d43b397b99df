"""Reader-fed training loader: what the in-memory sample cache (`data.cache_mb`) saves.

    python tools/bench_reader.py recipe=camvid data.root=PATH [data.subset=0.1] [epochs=3]
        [batch_size=8] [augment=false] [key.sub=value ...]

Streams the recipe's training split through `make_loader` as generator training does (one process,
no loader workers; `augment=true`: as segmenter training does) for `epochs` passes, once with
`data.cache_mb=0` and once with the recipe's cache, in one process.
Prints wall ms per batch and CPU ms per sample for the first pass (the cache fills) and the later
ones (it serves).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dataclasses  # noqa: E402

import torch  # noqa: E402

from synthdata.core.recipe_loading import parse_command_line  # noqa: E402
from synthdata.core.runtime import benchmark_allocator, cpu_model  # noqa: E402
from synthdata.data.loader import Source, make_loader  # noqa: E402
from synthdata.data.readers import make_reader  # noqa: E402

ARGUMENTS = {"epochs": 3, "batch_size": 8, "augment": False}


def passes(data, args: dict, seed: int = 0) -> list[tuple[float, float, int]]:
    """(wall s, CPU s, samples) of each pass over the split."""
    reader = make_reader(data, data.train_split)
    batch, n = int(args["batch_size"]), len(reader)
    per_pass = max(1, n // batch)
    loader = make_loader(Source(reader=reader), batch_size=batch, augment=bool(args["augment"]), shuffle=True,
                         epoch_length=per_pass * batch * int(args["epochs"]), seed=seed, with_depth=data.has_depth,
                         rank=0, world_size=1)
    out, it = [], iter(loader)
    for _ in range(int(args["epochs"])):
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(per_pass):
            next(it)
        out.append((time.perf_counter() - wall, time.process_time() - cpu, per_pass * batch))
    return out


def main(argv: list[str]) -> int:
    recipe, args = parse_command_line(argv, ARGUMENTS)
    data = recipe.data
    print(f"reader {data.reader}, {data.height}x{data.width}, subset {data.subset}, batch {args['batch_size']}, "
          f"augment {args['augment']}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{cpu_model()}, {benchmark_allocator()}")
    print("| cache | pass | wall ms / batch | CPU ms / sample |")
    print("| --- | --- | --- | --- |")
    for cache in (0, data.cache_mb):
        for i, (wall, cpu, samples) in enumerate(passes(dataclasses.replace(data, cache_mb=cache), args)):
            print(f"| {cache} MB | {i + 1} | {1000 * wall / (samples / int(args['batch_size'])):.1f} | "
                  f"{1000 * cpu / samples:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
