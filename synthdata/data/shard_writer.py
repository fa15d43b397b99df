"""`ShardWriter`: samples -> WebDataset tar shards, each written to a temporary name and renamed when
complete, with its sha256 in a sidecar and the folder's `manifest.json` (format: `synthdata.data.shards`).
"""

from __future__ import annotations

import concurrent.futures as futures
import fcntl
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

from synthdata.core.atomic import naming_the_file, write_json_atomic
from synthdata.core.contract import ClassInfo, ShardError
from synthdata.core.run_dir import remove_inside
from synthdata.data.shards import FORMAT, MANIFEST, SIDECAR_SUFFIX, check_compatible, encode_sample, json_default, shard_fingerprint


class ShardWriter:
    """Writes numbered shards `{prefix}-{index:06d}.tar` into `out_dir`; see the module docstring.

    `write_shard(index, samples)` encodes in `encode_workers` threads (cv2 releases the GIL) and
    writes the tar in a background thread, so the caller's generation overlaps with encoding;
    errors surface on the next call, `flush()` or `close()`. Each rank of a distributed run writes
    disjoint indices; after all ranks have called `close()`, one process calls
    `finalize_manifest()`. Use it as a context manager.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        *,
        prefix: str,
        shard_size: int,
        classes: ClassInfo,
        recipe: dict[str, Any],
        depth_scale: float,
        image_format: str = "png",
        png_compression: int = 1,
        jpeg_quality: int = 95,
        encode_workers: int = 2,
        max_pending: int = 2,
    ):
        if "." in prefix or "/" in prefix or not prefix:
            raise ShardError(f"shard prefix must be a non-empty name without dots or slashes: {prefix!r}")
        if image_format not in ("png", "jpg"):
            raise ShardError(f"unknown image_format '{image_format}'; valid: png, jpg")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.prefix, self.shard_size, self.classes = prefix, int(shard_size), classes
        self.recipe, self.depth_scale = recipe, float(depth_scale)
        self.recipe_name = recipe.get("name") if isinstance(recipe, dict) else None
        self.sixteen_bit = classes.num_classes > 255 or classes.ignore_index > 255
        self.encode_options = dict(
            image_format=image_format, png_compression=png_compression, jpeg_quality=jpeg_quality,
            depth_scale=self.depth_scale, sixteen_bit=self.sixteen_bit, classes=classes,
        )
        check_compatible(self.out_dir, classes, self.recipe_name)
        self._encoders = futures.ThreadPoolExecutor(max(1, encode_workers), thread_name_prefix="encode")
        self._writer = futures.ThreadPoolExecutor(1, thread_name_prefix="shard-writer")
        self._pending: list[futures.Future] = []
        self.max_pending = max(1, max_pending)
        self.samples_written = 0

    def shard_name(self, index: int) -> str:
        return f"{self.prefix}-{index:06d}.tar"

    def is_complete(self, index: int) -> bool:
        """The shard exists under its final name and its sidecar records its size."""
        path = self.out_dir / self.shard_name(index)
        sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
        if not (path.is_file() and sidecar.is_file()):
            return False
        try:
            return json.loads(sidecar.read_text()).get("bytes") == path.stat().st_size
        except (json.JSONDecodeError, OSError):
            return False

    def write_shard(self, index: int, samples: list[dict[str, Any]]) -> bool:
        """Queue shard `index` (at most `shard_size` samples, handed over: do not mutate them).
        Returns False, writing nothing, when that shard is already complete (resume)."""
        self._reap(block=False)
        if self.is_complete(index):
            return False
        if not samples or len(samples) > self.shard_size:
            raise ShardError(f"shard {index}: {len(samples)} samples, expected 1..{self.shard_size}")
        while len(self._pending) >= self.max_pending:  # bound memory held by queued shards
            futures.wait(self._pending, return_when=futures.FIRST_COMPLETED)
            self._reap(block=False)
        self._pending.append(self._writer.submit(self._write, index, list(samples)))
        return True

    def _reap(self, block: bool) -> None:
        if block:
            futures.wait(self._pending)
        done = [f for f in self._pending if f.done()]
        self._pending = [f for f in self._pending if not f.done()]
        for f in done:
            f.result()  # re-raise a failed write here, in the caller's thread

    def _write(self, index: int, samples: list[dict[str, Any]]) -> None:
        name = self.shard_name(index)
        encoded = list(self._encoders.map(lambda s: encode_sample(s, **self.encode_options), samples))
        keys = [e["__key__"] for e in encoded]
        if len(set(keys)) != len(keys):
            raise ShardError(f"shard {name}: duplicate sample keys")
        final = self.out_dir / name
        tmp = self.out_dir / f".{name}.{os.getpid()}.tmp"
        digest = hashlib.sha256()
        try:
            with open(tmp, "wb") as f:
                with tarfile.open(fileobj=_HashingWriter(f, digest), mode="w|", format=tarfile.PAX_FORMAT) as tar:
                    for entry in encoded:
                        for ext in sorted(k for k in entry if k != "__key__"):
                            _add_member(tar, f"{entry['__key__']}.{ext}", entry[ext])
                f.flush()
                os.fsync(f.fileno())
        except BaseException as e:  # a full disk: no partial shard left behind, and the error names it
            tmp.unlink(missing_ok=True)
            named = naming_the_file(e, final)
            if named is not None:
                raise named from e
            raise
        size = tmp.stat().st_size
        os.replace(tmp, final)  # the shard exists whole or not at all
        sidecar = {"name": name, "samples": len(encoded), "sha256": digest.hexdigest(), "bytes": size,
                   "fingerprint": shard_fingerprint(self.classes, self.recipe_name)}
        write_json_atomic(final.with_name(name + SIDECAR_SUFFIX), sidecar, sort_keys=True, default=json_default)
        self.samples_written += len(encoded)

    def flush(self) -> None:
        """Wait for every queued shard; re-raise the first write error."""
        self._reap(block=True)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._writer.shutdown(wait=True)
            self._encoders.shutdown(wait=True)

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def finalize_manifest(self, shard_indices: list[int] | range | None = None) -> dict[str, Any]:
        """Write `manifest.json` listing every complete shard on disk (from the sidecars).
        Call on one process after all writers closed; a file lock serialises concurrent calls.
        `shard_indices`: the shards the run meant to write; missing ones are recorded."""
        self.flush()
        with open(self.out_dir / ".manifest.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            for stale in self.out_dir.glob(".*.tar.*.tmp"):  # left by killed writers; all are done now
                remove_inside(stale, self.out_dir)
            shards = []
            for sidecar in sorted(self.out_dir.glob(f"*.tar{SIDECAR_SUFFIX}")):
                record = json.loads(sidecar.read_text())
                path = self.out_dir / record["name"]
                if path.is_file() and path.stat().st_size == record["bytes"]:
                    shards.append({k: record[k] for k in ("name", "samples", "sha256")})
            names = {s["name"] for s in shards}
            missing = [i for i in (shard_indices or []) if self.shard_name(i) not in names]
            manifest = {
                "format": FORMAT, "recipe_name": self.recipe_name, "recipe": self.recipe,
                **self.classes.to_dict(), "depth_scale": self.depth_scale,
                "image_format": self.encode_options["image_format"],
                "layout_bits": 16 if self.sixteen_bit else 8,
                "num_samples": sum(s["samples"] for s in shards), "shards": shards,
                "missing_shards": [self.shard_name(i) for i in missing],
            }
            write_json_atomic(self.out_dir / MANIFEST, manifest, sort_keys=True, default=json_default)
        return manifest


class _HashingWriter(io.RawIOBase):
    """A write-only file wrapper that hashes what passes through (sha256 without a re-read)."""

    def __init__(self, f: Any, digest: Any):
        self.f, self.digest = f, digest

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.digest.update(data)
        return self.f.write(data)


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    # fixed metadata so writing the same samples twice gives byte-identical shards
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o444
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))
