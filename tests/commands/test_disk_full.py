"""Issue 34: a write that fails for want of room (a full disk: ENOSPC, a file-size limit: EFBIG)
ends a command with exit code 2 and one line naming the folder it was writing, leaves no partial
file, and the same command run again once there is room completes.

A full disk is injected in-process (the write path raises ENOSPC, as `write()` does: without a file
name); the file-size limit is real, `RLIMIT_FSIZE` in a subprocess (SIGXFSZ would otherwise kill it).
"""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from synthdata.cli import main as cli
from synthdata.core.entry import output_folder, run_main

TINY = [  # 4 classes at 32x64, 8-channel stages, one shard of 4 samples
    "data.height=32", "data.width=64", "data.classes=[a, b, c, d]", "data.reader=folder",
    "stages.layout.ngf=8", "stages.layout.ndf=8", "stages.layout.z_dim=16",
    "stages.depth.ngf=8", "stages.depth.ndf=8", "stages.image.ngf=8", "stages.image.ndf=8",
    "produce.num_samples=4", "produce.shard_size=4", "produce.batch_size=4",
    "produce.mixed_precision='no'", "produce.encode_workers=1",
]
SEGMENT = ["recipe=toy", "data.height=32", "data.width=64", "data.split_sizes={train: 4, val: 2, test: 2}",
           "seg.model.encoder_depth=3", "seg.model.decoder_channels=[16,8,8]", "seg.batch_size=2", "seg.steps=2",
           "seg.val_every=0", "seg.checkpoint_every=1", "seg.mixed_precision='no'", "eval.batch_size=2"]







_BAR = re.compile(r"\[\d+:\d\d(:\d\d)?[^\]]*\]$")  # a tqdm bar ends with [elapsed<left, rate]


def error_lines(err: str) -> list[str]:
    """stderr without progress bars (tqdm redraws with carriage returns) and blank lines."""
    pieces = [p for line in err.split("\n") for p in line.split("\r")]
    return [p for p in pieces if p.strip() and not _BAR.search(p.strip())]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, random_stages) -> Path:
    """Randomly initialised layout/depth/image stages (classes a, b, c, d)."""
    return random_stages(tmp_path_factory.mktemp("disk_full_run"), TINY)


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as write() raises it: no file name


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_produce_on_a_full_disk_names_its_folder_and_a_rerun_completes(tmp_path, run_dir, monkeypatch, capsys):
    from synthdata.data import shard_writer

    out = tmp_path / "shards"
    argv = ["produce", f"run_dir={run_dir}", *TINY, f"produce.out={out}"]
    with monkeypatch.context() as patch:
        patch.setattr(shard_writer._HashingWriter, "write", _full_disk)
        assert cli(argv) == 2
    line = _one_line(capsys)
    assert line.startswith(f"error: {out}: no space left on device (writing {out / 'synth-000000.tar'}); free space")
    assert not list(out.glob("*.tar")) and not _temporaries(out)  # no partial shard
    assert cli(argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["num_samples"] == 4 and manifest["missing_shards"] == [] and not _temporaries(out)


def test_produce_past_the_file_size_limit_is_one_line_not_a_killed_process(tmp_path, run_dir, capsys):
    """RLIMIT_FSIZE below a shard's size: the kernel sends SIGXFSZ (which kills by default) and the
    write fails with EFBIG. Settings files fit the limit, the shard (~60 kB) does not."""
    out = tmp_path / "shards"
    argv = ["produce", f"run_dir={run_dir}", *TINY, f"produce.out={out}"]
    script = textwrap.dedent(f"""
        import resource, sys
        from synthdata.cli import main
        import synthdata.produce, synthdata.generation.production  # imported before the limit
        resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))
        sys.exit(main({argv!r}))
    """)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 2, (done.returncode, done.stderr[-3000:])
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert lines[0].startswith(f"error: {out}: file too large for the file-size limit (ulimit -f) (writing ")
    assert not list(out.glob("*.tar")) and not _temporaries(out)
    assert cli(argv) == 0  # the limit lifted: the same command completes
    assert json.loads((out / "manifest.json").read_text())["num_samples"] == 4


def test_segment_on_a_full_disk_names_its_run_dir_and_a_rerun_completes(tmp_path, monkeypatch, capsys):
    """Accelerate writes the training state with safetensors, whose error holds only the text
    `(os error 28)`: no errno, no file name."""
    import accelerate.utils.other
    from safetensors import SafetensorError

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    run = tmp_path / "run"
    argv = ["segment", *SEGMENT, f"run_dir={run}"]
    with monkeypatch.context() as patch:
        patch.setattr(accelerate.utils.other, "safe_save_file", full)
        assert cli(argv) == 2
    line = _one_line(capsys)
    assert line.startswith(f"error: {run}: no space left on device; free space and rerun the same command")
    assert not (run / "checkpoints" / "segmenter" / "state").exists()  # only state.tmp, replaced on the rerun
    assert cli(argv) == 0
    assert json.loads((run / "report" / "report.json").read_text())["info"]["steps"] == 2
    assert not (run / "checkpoints" / "segmenter" / "state.tmp").exists() and not _temporaries(run)


def test_each_way_a_library_reports_no_room_becomes_the_same_line(capsys, monkeypatch, tmp_path):
    """OSError without a file (write), torch.save into a file (a RuntimeError raised while handling
    the OSError), safetensors (text only), torch.save to a path (nothing: the limit is asked)."""
    import resource

    from safetensors import SafetensorError

    def torch_into_a_file(argv):
        try:
            raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from None

    def torch_to_a_path(argv):
        try:
            raise RuntimeError("basic_ios::clear: iostream error")
        except RuntimeError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534") from None

    def safetensors_over_quota(argv):
        raise SafetensorError("Error while serializing: I/O error: Disk quota exceeded (os error 122)")

    argv = ["recipe=toy", f"run_dir={tmp_path / 'run'}"]
    for main, reason in [(_full_disk, "no space left on device"),
                         (torch_into_a_file, "file too large for the file-size limit (ulimit -f)"),
                         (safetensors_over_quota, "disk quota exceeded")]:
        assert run_main(main, argv) == 2
        assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'run'}: {reason}; ")
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1 << 20, 1 << 20))
    assert run_main(torch_to_a_path, argv) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'run'}: file too large for the file-size limit")
    monkeypatch.setattr(resource, "getrlimit", lambda which: (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    with pytest.raises(RuntimeError, match="inline_container"):  # room on disk, no limit: a real bug, traceback
        run_main(torch_to_a_path, argv)


def test_the_output_folder_is_the_one_the_command_writes():
    assert output_folder(["recipe=toy", "run_dir=runs/a", "produce.out=/big/shards"]) == "/big/shards"
    assert output_folder(["recipe=toy", "run_dir=runs/a"]) == "runs/a"
    assert output_folder(["miou", "checkpoint=x.pt", "out='reports/x'"]) == "reports/x"
    assert output_folder(["recipe=toy"]) is None
