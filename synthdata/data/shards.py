"""WebDataset shards: encoding and decoding samples, manifests, raw tar reading (the writer is
`synthdata.data.shard_writer`).

A shard is a POSIX tar of `KEY.image.png|jpg`, `KEY.layout.png`, `KEY.depth.png`, `KEY.json`
(the data contract, `synthdata.core.contract`), written under a temporary name and renamed when whole. Each
finished shard gets a sidecar `NAME.tar.json` (count, sha256); `manifest.json` lists them all.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
from tqdm.auto import tqdm
from webdataset.gopen import gopen
from webdataset.shardlists import expand_urls

from synthdata.core.contract import ClassInfo, ShardError

MANIFEST = "manifest.json"
FORMAT = "synthdata-shards/1"
SIDECAR_SUFFIX = ".json"  # beside NAME.tar: NAME.tar.json
REQUIRED = ("image", "layout")


# --------------------------------------------------------------------------------------------
# One sample <-> tar members
# --------------------------------------------------------------------------------------------


def safe_key(key: Any) -> str:
    """A webdataset key: no dots (webdataset splits names at the first dot) and no slashes."""
    text = str(key).replace(".", "_").replace("/", "_").replace("\\", "_").replace(" ", "_")
    if not text:
        raise ShardError("empty sample key")
    return text


def json_default(value: Any) -> Any:
    """`json.dumps(default=...)` for sample metadata: numpy scalars and arrays as Python values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)  # paths and other odd values become text rather than failing a long run


def _imencode(ext: str, array: np.ndarray, params: list[int], what: str) -> bytes:
    ok, buf = cv2.imencode(ext, array, params)
    if not ok:
        raise ShardError(f"could not encode {what} as {ext}")
    return buf.tobytes()


def encode_sample(
    sample: dict[str, Any],
    *,
    key: str | None = None,
    image_format: str = "png",
    png_compression: int = 1,
    jpeg_quality: int = 95,
    depth_scale: float = 0.001,
    sixteen_bit: bool = False,
    classes: ClassInfo | None = None,
) -> dict[str, Any]:
    """A sample of the data contract -> `{"__key__": str, "image.png": bytes, "layout.png": ...,
    "depth.png": ..., "json": ...}`. Depth is stored as uint16 `round(depth / depth_scale)`,
    0 for unknown (NaN or <= 0), saturated at 65535. The meta records `depth_scale`.
    With `classes`, labels other than 0..C-1 and ignore_index are refused.
    """
    meta = dict(sample.get("meta") or {})
    key = safe_key(key if key is not None else meta.get("id", ""))
    for name in REQUIRED:
        if sample.get(name) is None:
            raise ShardError(f"sample {key}: missing '{name}'")
    image, layout = np.asarray(sample["image"]), np.asarray(sample["layout"])
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ShardError(f"sample {key}: image must be uint8 HxWx3, got {image.dtype} {image.shape}")
    if layout.shape != image.shape[:2]:
        raise ShardError(f"sample {key}: layout {layout.shape} differs from image {image.shape[:2]}")
    limit = 65535 if sixteen_bit else 255
    if layout.size and (int(layout.min()) < 0 or int(layout.max()) > limit):
        raise ShardError(f"sample {key}: layout values outside 0..{limit}")
    if classes is not None and layout.size and int(layout.max()) >= classes.num_classes:
        bad = np.unique(layout[(layout >= classes.num_classes) & (layout != classes.ignore_index)])
        if bad.size:
            raise ShardError(f"sample {key}: labels {bad[:10].tolist()} are not among the {classes.num_classes} "
                             f"classes nor ignore_index {classes.ignore_index}")
    png = [cv2.IMWRITE_PNG_COMPRESSION, int(png_compression)]
    bgr = np.ascontiguousarray(image[..., ::-1])  # OpenCV encodes BGR
    out: dict[str, Any] = {"__key__": key}
    if image_format == "png":
        out["image.png"] = _imencode(".png", bgr, png, f"{key} image")
    elif image_format in ("jpg", "jpeg"):
        out["image.jpg"] = _imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)], key)
    else:
        raise ShardError(f"unknown image_format '{image_format}'; valid: png, jpg")
    out["layout.png"] = _imencode(
        ".png", layout.astype(np.uint16 if sixteen_bit else np.uint8), png, f"{key} layout"
    )
    depth = sample.get("depth")
    if depth is not None:
        depth = np.asarray(depth, dtype=np.float64)
        if depth.shape != layout.shape:
            raise ShardError(f"sample {key}: depth {depth.shape} differs from layout {layout.shape}")
        valid = np.isfinite(depth) & (depth > 0)
        steps = np.where(valid, np.rint(np.where(valid, depth, 0) / depth_scale), 0)
        steps = np.where(valid, np.clip(steps, 1, 65535), 0).astype(np.uint16)
        out["depth.png"] = _imencode(".png", steps, png, f"{key} depth")
        meta["depth_scale"] = float(depth_scale)
    out["json"] = json.dumps(meta, sort_keys=True, default=json_default).encode("utf-8")
    return out


_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)


def _imdecode(data: bytes, flags: int, what: str) -> np.ndarray:
    array = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if array is None:
        raise ShardError(f"cannot decode {what} (corrupt image data)")
    return array


def decode_sample(raw: dict[str, Any], *, depth_scale: float | None = None, depth: bool = True) -> dict[str, Any]:
    """Tar members of one sample (bytes, as grouped by webdataset) -> the in-memory sample.
    `meta` gains `key` and `url`; a missing image or layout raises `ShardError` naming both.
    `depth=False` skips decoding depth.png (segmentation training does not need it).
    """
    key, url = raw.get("__key__", "?"), raw.get("__url__", "?")
    where = f"sample '{key}' in {url}"
    image_bytes = raw.get("image.png", raw.get("image.jpg"))
    if image_bytes is None:
        raise ShardError(f"{where}: missing image.png/image.jpg (members: {sorted(raw)})")
    if raw.get("layout.png") is None:
        raise ShardError(f"{where}: missing layout.png (members: {sorted(raw)})")
    meta_raw = raw.get("json")
    try:
        meta = meta_raw if isinstance(meta_raw, dict) else json.loads(meta_raw or b"{}")
    except json.JSONDecodeError as e:
        raise ShardError(f"{where}: malformed json meta ({e})") from e
    if _IMREAD_RGB is not None:  # OpenCV >= 4.11 decodes straight to RGB (saves a copy)
        image = _imdecode(image_bytes, _IMREAD_RGB, f"{where} image")
    else:
        image = _imdecode(image_bytes, cv2.IMREAD_COLOR, f"{where} image")[..., ::-1]
    layout = _imdecode(raw["layout.png"], cv2.IMREAD_UNCHANGED, f"{where} layout")
    if layout.ndim != 2 or layout.shape != image.shape[:2]:
        raise ShardError(f"{where}: layout {layout.shape} does not match image {image.shape[:2]}")
    sample = {"image": np.ascontiguousarray(image), "layout": layout, "meta": dict(meta)}
    if depth and raw.get("depth.png") is not None:
        scale = depth_scale if depth_scale is not None else float(meta.get("depth_scale", 0.001))
        steps = _imdecode(raw["depth.png"], cv2.IMREAD_UNCHANGED, f"{where} depth")
        if steps.shape != layout.shape:
            raise ShardError(f"{where}: depth {steps.shape} does not match layout {layout.shape}")
        sample["depth"] = np.multiply(steps, np.float32(scale), dtype=np.float32)
    sample["meta"].update(key=key, url=url)
    return sample


def check_labels(layout: np.ndarray, classes: ClassInfo, where: str) -> None:
    """Refuse labels other than 0..C-1 and ignore_index (`ShardError` naming `where`): a shard
    whose manifest declares fewer classes than its labels use would crash a segmenter's loss."""
    count = classes.num_classes
    if not layout.size or int(layout.max()) < count:  # one pass in the usual case
        return
    bad = (layout >= count) & (layout != classes.ignore_index)
    if bad.any():
        raise ShardError(f"{where}: labels {np.unique(layout[bad])[:10].tolist()} are not among the {count} classes "
                         f"(0..{count - 1}) nor ignore_index {classes.ignore_index} that its manifest declares")


# --------------------------------------------------------------------------------------------
# Raw tar reading (any URL webdataset can open: paths, pipe:, http)
# --------------------------------------------------------------------------------------------


_BLOCK = 512


def _tar_members(stream: Any) -> Iterator[tuple[str, bytes]]:
    """`(name, data)` of the regular files in a tar stream (ustar, pax and GNU long names).
    A plain header parser: tarfile's stream mode costs ~0.1 ms per member, which shows at
    thousands of samples per second."""
    long_name = None
    while True:
        header = stream.read(_BLOCK)
        if header.count(0) == _BLOCK:  # end of archive
            return
        if not header:  # every tar writer ends with zero blocks: without them, data was cut off
            raise ShardError("ends without the end-of-archive blocks")
        if len(header) < _BLOCK:
            raise ShardError("truncated tar header")
        stored = int(header[148:156].rstrip(b"\0 ").lstrip(b" ") or b"-1", 8)
        if stored != sum(header[:148]) + 8 * 32 + sum(header[156:]):
            raise ShardError("bad tar header checksum")
        size = int(header[124:136].rstrip(b"\0 ").lstrip(b" ") or b"0", 8)
        data = stream.read(size)
        if len(data) < size:
            raise ShardError(f"truncated member ({len(data)} of {size} bytes)")
        if len(stream.read(-size % _BLOCK)) < -size % _BLOCK:
            raise ShardError("truncated member padding")
        kind = header[156:157]
        if kind == b"x":  # pax extended header: only the path matters here
            for record in data.decode("utf-8").splitlines():
                if " path=" in record:
                    long_name = record.split(" path=", 1)[1]
            continue
        if kind == b"L":  # GNU long name
            long_name = data.rstrip(b"\0").decode("utf-8")
            continue
        if kind in (b"0", b"\0", b"7"):
            name = header[:100].rstrip(b"\0").decode("utf-8")
            prefix = header[345:500].rstrip(b"\0").decode("utf-8")
            yield long_name or (f"{prefix}/{name}" if prefix else name), data
        long_name = None


def iter_tar(url: str, *, expected: int | None = None) -> Iterator[dict[str, Any]]:
    """Raw samples `{"__key__", "__url__", ext: bytes}` of one shard, in order. A corrupt or
    truncated tar, or fewer samples than `expected` (from a manifest), raises `ShardError`.
    """

    count, current, error = 0, None, None
    try:
        stream = gopen(url, "rb")
    except Exception as e:  # noqa: BLE001 - any opener failure is reported with the URL
        raise ShardError(f"cannot open shard {url}: {e}") from e
    try:
        for name, data in _tar_members(stream):
            base = os.path.basename(name)
            if "." not in base:
                continue
            key, ext = base.split(".", 1)
            if current is not None and current["__key__"] != key:
                yield current
                count += 1
                current = None
            if current is None:
                current = {"__key__": key, "__url__": url}
            current[ext] = data
    except (ShardError, OSError, ValueError) as e:
        error = e
    finally:  # also when the consumer stops early: never leak the file or the pipe's process
        try:
            stream.close()  # a pipe: URL reports its command's exit status here
        except OSError as e:
            error = e if error is None else OSError(f"{e}; {error}")  # the command's failure first
    if error is not None:
        raise ShardError(f"corrupt, truncated or unreadable shard {url}: {error}") from error
    if current is not None:
        yield current
        count += 1
    if expected is not None and count != expected:
        raise ShardError(f"truncated or changed shard {url}: {count} samples, manifest says {expected}")


def resolve_urls(spec: str | os.PathLike | list) -> tuple[list[str], dict[str, Any] | None]:
    """Shard URLs of `spec` and the manifest found beside them (or None).

    `spec`: a folder holding manifest.json (its listed shards), a brace pattern
    (`dir/x-{000000..000009}.tar`), a glob, a `pipe:`/`http(s)://` URL, or a list of these.
    Nothing matched, or a local shard that does not exist, raises `ShardError`."""
    if isinstance(spec, (list, tuple)):
        found = [resolve_urls(s) for s in spec]
        urls = [u for us, _ in found for u in us]
        return urls, next((m for _, m in found if m is not None), None)
    spec = str(spec)
    if os.path.isdir(spec):
        if not os.path.isfile(os.path.join(spec, MANIFEST)):
            raise ShardError(f"no {MANIFEST} in {spec} (was the run finalized?); to read its shards "
                             f"without one, pass a pattern such as {os.path.join(spec, '*.tar')}")
        manifest = read_manifest(spec)
        urls = [os.path.join(spec, s["name"]) for s in manifest["shards"]]
        manifest["_dir"] = spec
    elif spec.startswith("pipe:") or "://" in spec:
        urls, manifest = expand_urls(spec), None
    else:
        urls = []
        for pattern in expand_urls(spec):
            urls += sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        missing = [u for u in urls if not os.path.isfile(u)]
        if missing:
            raise ShardError(f"{spec}: {len(missing)} shard(s) not found, e.g. {missing[0]}")
        folder = os.path.dirname(urls[0]) if urls else ""
        manifest = read_manifest(folder or ".") if urls and os.path.isfile(os.path.join(folder, MANIFEST)) else None
        if manifest is not None:
            manifest["_dir"] = folder
    if not urls:
        raise ShardError(f"{spec}: matched no shards")
    return urls, manifest


def expected_counts(urls: list[str], manifest: dict[str, Any] | None) -> dict[str, int]:
    """Sample counts per URL from the manifest, to detect shards truncated at a member boundary."""
    if manifest is None:
        return {}
    counts = {s["name"]: int(s["samples"]) for s in manifest["shards"]}
    folder = os.path.abspath(manifest.get("_dir", "."))
    return {u: counts[os.path.basename(u)] for u in urls
            if os.path.dirname(os.path.abspath(u)) == folder and os.path.basename(u) in counts}


# --------------------------------------------------------------------------------------------
# Manifests
# --------------------------------------------------------------------------------------------


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """The `manifest.json` of a shard folder; a missing or malformed file raises `ShardError`."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ShardError(f"no {MANIFEST} in {directory} (was the run finalized?)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ShardError(f"malformed {path}: {e}") from e
    if not isinstance(manifest, dict):
        raise ShardError(f"malformed {path}: expected a JSON object")
    for field in ("classes", "palette", "ignore_index", "shards"):
        if field not in manifest:
            raise ShardError(f"{path}: missing '{field}'")
    for entry in manifest["shards"]:  # confined to the folder: no '../x.tar', no absolute paths
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name or name in (".", "..") or os.path.basename(name) != name \
                or "/" in name or "\\" in name:
            raise ShardError(f"{path}: shard entry {name if name is not None else entry!r} is not a file name "
                             "inside the manifest's folder (a manifest may only list shards beside it)")
    return manifest


def manifest_classes(manifest: dict[str, Any]) -> ClassInfo:
    return ClassInfo.from_dict(manifest)


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def listed_sha256(urls: list[str], manifest: dict[str, Any] | None) -> dict[str, str]:
    """The sha256 the manifest records for each of `urls` it lists (local shards in its folder)."""
    if manifest is None:
        return {}
    recorded = {s["name"]: s["sha256"] for s in manifest["shards"] if s.get("sha256")}
    folder = os.path.abspath(manifest.get("_dir", "."))
    return {u: recorded[os.path.basename(u)] for u in urls
            if os.path.dirname(os.path.abspath(u)) == folder and os.path.basename(u) in recorded}


def verify_shards(urls: list[str], manifest: dict[str, Any] | None, *, progress: bool = True) -> int:
    """Check each shard the manifest lists against the sha256 it records; raise `ShardError` naming
    the first that differs (changed or corrupt since it was written). Returns the shards checked
    (0 without a manifest: nothing to compare with). Reads every listed shard once (a bar when
    they hold more than 1 GB)."""
    digests = listed_sha256(urls, manifest)
    total = sum(os.path.getsize(u) for u in digests)
    with tqdm(total=total, desc="verify shards", unit="B", unit_scale=True, leave=False,
              disable=not progress or total < 2**30) as bar:
        for url, expected in digests.items():
            if sha256_file(url) != expected:
                raise ShardError(f"{url}: its sha256 differs from the one {os.path.join(manifest.get('_dir', '.'), MANIFEST)} "
                                 "records: the shard changed or is corrupt since it was written; write it again "
                                 "(rerun the command that made the folder) or restore it")
            bar.update(os.path.getsize(url))
    return len(digests)


def verify_manifest(directory: str | os.PathLike) -> list[str]:
    """Problems found comparing `manifest.json` with the shards on disk (empty list: all good):
    missing shards, sha256 mismatches, unlisted shards."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    problems = []
    listed = set()
    for entry in manifest["shards"]:
        listed.add(entry["name"])
        path = directory / entry["name"]
        if not path.is_file():
            problems.append(f"{path}: listed in the manifest but missing")
        elif sha256_file(path) != entry["sha256"]:
            problems.append(f"{path}: sha256 mismatch (file changed or corrupt)")
    for path in sorted(directory.glob("*.tar")):
        if path.name not in listed:
            problems.append(f"{path}: not listed in the manifest")
    return problems


def shard_fingerprint(classes: ClassInfo, recipe_name: str | None) -> dict[str, Any]:
    return {"classes": list(classes.names), "ignore_index": int(classes.ignore_index), "recipe_name": recipe_name}


def check_compatible(directory: Path, classes: ClassInfo, recipe_name: str | None) -> None:
    """Refuse to write into a folder whose manifest or shards were made for other classes or
    another recipe: mixing them would silently corrupt training data."""
    mine = shard_fingerprint(classes, recipe_name)
    records = []
    if (directory / MANIFEST).is_file():
        manifest = read_manifest(directory)
        records.append((directory / MANIFEST, shard_fingerprint(manifest_classes(manifest), manifest.get("recipe_name"))))
    for sidecar in sorted(directory.glob(f"*.tar{SIDECAR_SUFFIX}"))[:1]:
        records.append((sidecar, json.loads(sidecar.read_text()).get("fingerprint")))
    for path, theirs in records:
        if theirs != mine:
            raise ShardError(
                f"{path} was written for {theirs}, not {mine}; write to another folder (never mix)"
            )
