"""Atomic writes: the old file or the new one whole, never half of one, and no stray temporary."""

from __future__ import annotations

import json

import pytest

from synthdata.core.atomic import write_atomic, write_json_atomic, write_text_atomic


def test_text_and_json_land_whole(tmp_path):
    write_text_atomic(tmp_path / "sub" / "report.md", "# title\n")
    write_json_atomic(tmp_path / "report.json", {"b": 1, "a": [1.5]}, sort_keys=True)
    assert (tmp_path / "sub" / "report.md").read_text() == "# title\n"
    assert json.loads((tmp_path / "report.json").read_text()) == {"a": [1.5], "b": 1}
    assert (tmp_path / "report.json").read_text().startswith('{\n "a"')  # indent=1, keys sorted


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "report.md"
    path.write_text("old")

    def half_then_fail(f):
        f.write(b"half of the new")
        raise KeyboardInterrupt  # a kill mid-write

    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, half_then_fail)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_a_value_json_refuses_leaves_nothing_behind(tmp_path):
    with pytest.raises(ValueError):
        write_json_atomic(tmp_path / "report.json", {"x": float("nan")}, allow_nan=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_follow_the_umask_as_a_plain_open_would(tmp_path, umask):
    """Reports and manifests were 0600 whatever the umask (mkstemp's mode): teammates could not read them."""
    import os

    old = os.umask(umask)
    try:
        written = write_json_atomic(tmp_path / "report.json", {"a": 1})
        with open(tmp_path / "plain.json", "w") as f:
            f.write("{}")
    finally:
        os.umask(old)
    assert written.stat().st_mode & 0o777 == (tmp_path / "plain.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_full_disk_names_the_file_and_leaves_no_temporary(tmp_path):
    """Issue 34: write() on a full disk raises ENOSPC without a file name; the error names the target."""
    import errno
    import os

    def full(f):
        f.write(b"part")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError) as info:
        write_atomic(tmp_path / "latest.pt", full)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "latest.pt")
    assert list(tmp_path.iterdir()) == []
