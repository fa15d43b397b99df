"""Where evaluation samples come from: one spec string -> an iterable of data-contract samples.

A spec is a shard pattern or shard folder (`shards/synth-{000000..000007}.tar`, `runs/x/shards`,
`pipe:...`), a dataset split (`recipe:val` for the command line's recipe, `NAME:split` for a
shipped recipe or a recipe path), a folder of images (FID on images only), or `run:RUN_DIR`:
samples drawn on the fly from a run's trained stages (needs `count=N`).
"""

from __future__ import annotations

import glob
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import cv2
import numpy as np

from synthdata.core.contract import ClassInfo, ConfigError, DatasetError
from synthdata.core.recipe import Recipe
from synthdata.core.recipe_loading import load_recipe
from synthdata.core.seeding import derive_seed
from synthdata.data.loader import Source, make_loader, source_classes
from synthdata.data.readers.base import DatasetReader, make_reader
from synthdata.generation.sampler import load_pipeline

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# run:RUN_DIR samples use seeds (run seed, EVAL_STREAM, i): a stream no shard index reaches, so
# evaluation samples are not copies of produced ones
EVAL_STREAM = 0x7FFFE7A1


@dataclass
class SampleSource:
    """A named, re-iterable stream of samples (`image` uint8 HxWx3, `layout`, `depth`, `meta`).

    `fingerprint` changes when the data behind the spec changes (it keys statistic caches);
    `classes` is None for a folder of plain images.
    """

    spec: str
    kind: str  # shards | split | folder | run | memory
    classes: ClassInfo | None
    fingerprint: str
    _iterate: Callable[[], Iterator[dict[str, Any]]] = field(repr=False)
    modalities: tuple[str, ...] = ("image", "layout", "depth")
    endless: bool = False  # generated on the fly: bounded only by `take(source, count)`

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self._iterate()

    def require(self, modality: str) -> None:
        """Stop early, naming the spec, when this source cannot supply `modality`."""
        if modality not in self.modalities:
            raise DatasetError(
                f"source '{self.spec}' ({self.kind}) has no '{modality}' data; it supplies "
                f"{', '.join(self.modalities)}. Use shards or a dataset split (e.g. recipe:val)."
            )


def open_source(
    spec: str | DatasetReader | list[dict[str, Any]],
    *,
    recipe: Recipe | None = None,
    with_depth: bool = False,
    classes: ClassInfo | None = None,
    layouts_only: bool = False,
    batch_size: int = 16,
) -> SampleSource:
    """Resolve a spec (see the module docstring) or wrap a reader / list of samples.

    `recipe` is the command line's recipe, used for `recipe:SPLIT` specs. `with_depth` asks
    shard loaders to decode depth (only needed for depth metrics). `classes` labels an
    in-memory list of samples (never cached: its fingerprint is empty). For `run:` specs,
    `layouts_only` runs only the layout stage, and `batch_size` samples are generated at a time.
    """
    if isinstance(spec, DatasetReader):
        return _reader_source(spec, f"{spec.name}:{spec.split}", _digest(asdict(spec.cfg), spec.split))
    if isinstance(spec, list):
        samples = spec
        return SampleSource("<memory>", "memory", classes, "", lambda: iter(samples))
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"a source must be shards, a folder, RECIPE:SPLIT or run:RUN_DIR, got {spec!r}")
    path = Path(spec).expanduser()
    if spec.startswith("run:"):
        return _run_source(spec, spec[4:], layouts_only=layouts_only, batch_size=batch_size)
    if spec.startswith("pipe:") or "{" in spec or spec.endswith(".tar"):
        return _shard_source(spec, spec, with_depth)
    if path.is_dir():
        if (path / "manifest.json").is_file():
            return _shard_source(spec, str(path), with_depth)
        tars = sorted(glob.glob(str(path / "*.tar")))
        if tars:
            return _shard_source(spec, tars, with_depth)
        images = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if images:
            return _folder_source(spec, images)
        raise DatasetError(f"source folder {path} holds no manifest.json, no .tar shards and no images")
    if ":" in spec:
        name, split = spec.rsplit(":", 1)
        if name == "recipe":
            if recipe is None:
                raise ConfigError(f"source '{spec}' needs a recipe (recipe=NAME on the command line)")
            split_recipe = recipe
        else:
            split_recipe = load_recipe(name)

        reader = make_reader(split_recipe.data, split)
        return _reader_source(reader, spec, _digest(asdict(split_recipe.data), split))
    raise DatasetError(
        f"source '{spec}' is neither an existing folder, a shard pattern (.tar, {{..}}, pipe:), "
        "RECIPE:SPLIT (e.g. recipe:val, toy:val) nor run:RUN_DIR"
    )


def take(samples: Iterable[dict[str, Any]], limit: int | None) -> Iterator[dict[str, Any]]:
    """The first `limit` samples (all when `limit` is None)."""
    if limit is None and getattr(samples, "endless", False):
        raise ConfigError(f"source '{samples.spec}' generates samples on the fly; give count=N")
    for i, sample in enumerate(samples):
        if limit is not None and i >= limit:
            return
        yield sample


# ---------------------------------------------------------------------------------------------


def _digest(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _reader_source(reader: DatasetReader, spec: str, fingerprint: str) -> SampleSource:
    modalities = ("image", "layout", "depth") if reader.has_depth else ("image", "layout")
    return SampleSource(spec, "split", reader.classes, fingerprint, lambda: iter(reader), modalities)


def _folder_source(spec: str, files: list[Path]) -> SampleSource:
    stats = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files]

    def iterate() -> Iterator[dict[str, Any]]:

        for path in files:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise DatasetError(f"cannot read image {path} (corrupt or not an image?)")
            yield {"image": cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), "meta": {"path": str(path), "id": path.stem}}

    return SampleSource(spec, "folder", None, _digest(stats), iterate, ("image",))


def _shard_fingerprint(urls: str | list[str]) -> str:
    """The manifest (it lists every shard's sha256) or else the shard files' sizes and times."""
    candidates = [urls] if isinstance(urls, str) else urls
    if isinstance(urls, str) and Path(urls).is_dir():
        manifest = Path(urls) / "manifest.json"
        return _digest(hashlib.sha256(manifest.read_bytes()).hexdigest())
    stats: list[Any] = []
    for url in candidates:
        manifest = Path(url.split("{")[0]).parent / "manifest.json"
        if manifest.is_file():
            stats.append(hashlib.sha256(manifest.read_bytes()).hexdigest())
        elif Path(url).is_file():
            stats.append((url, Path(url).stat().st_size, Path(url).stat().st_mtime_ns))
        else:
            stats.append(url)
    return _digest(stats)


def _shard_source(spec: str, urls: str | list[str], with_depth: bool) -> SampleSource:

    source = Source(urls=urls, name=spec)
    classes = source_classes(source)

    def iterate() -> Iterator[dict[str, Any]]:
        # batch_size=1: shards of mixed sizes must not break collation; rank 0 of 1 so this
        # process sees every sample exactly once (the metrics are computed in one process).
        loader = make_loader(
            source, batch_size=1, augment=False, shuffle=False, epoch_length=None,
            with_depth=with_depth, rank=0, world_size=1,
        )
        for batch in loader:
            yield _batch_to_sample(batch, spec)

    modalities = ("image", "layout", "depth") if with_depth else ("image", "layout")
    return SampleSource(spec, "shards", classes, _shard_fingerprint(urls), iterate, modalities)


def _run_source(spec: str, run_dir: str, *, layouts_only: bool, batch_size: int) -> SampleSource:
    """Endless samples from `load_pipeline(run_dir)`: sample i comes from seed
    `derive_seed(run seed, EVAL_STREAM, i)` only, so the stream is the same at any batch size."""

    pipeline = load_pipeline(run_dir)
    seed = int(pipeline.recipe.get("seed", 0))

    def iterate() -> Iterator[dict[str, Any]]:
        start = 0
        while True:
            seeds = [derive_seed(seed, EVAL_STREAM, start + i) for i in range(batch_size)]
            if layouts_only:
                out = {"layout": pipeline.layouts_from_seeds(seeds)}
            else:
                out = pipeline.sample(seeds)
            for i, s in enumerate(seeds):
                sample = {"layout": out["layout"][i].cpu().numpy(), "meta": {"id": f"eval{start + i}", "seed": s}}
                if out.get("image") is not None:
                    image = out["image"][i].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
                    sample["image"] = np.rint(image * 255.0).astype(np.uint8)
                if out.get("depth") is not None:
                    sample["depth"] = out["depth"][i].float().cpu().numpy()
                yield sample
            start += batch_size

    if layouts_only:
        modalities: tuple[str, ...] = ("layout",)
    else:
        modalities = ("image", "layout", "depth") if pipeline.has_depth else ("image", "layout")
    return SampleSource(spec, "run", pipeline.classes, "", iterate, modalities, endless=True)


def _batch_to_sample(batch: dict[str, Any], spec: str) -> dict[str, Any]:
    """One-sample loader batch (float image in [0, 1]) -> a data-contract sample."""
    image = batch["image"][0].permute(1, 2, 0).numpy()
    sample = {
        "image": np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8),
        "layout": batch["layout"][0].numpy(),
        "meta": {"id": batch["key"][0], "source": spec},
    }
    if "depth" in batch:
        sample["depth"] = batch["depth"][0, 0].numpy().astype(np.float32)
    return sample
