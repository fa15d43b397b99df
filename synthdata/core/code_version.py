"""Which code made a result: the package version plus the git commit when the package runs from a
git checkout (read from .git, else `git rev-parse HEAD` with a short timeout), else a sha256 over
the package's .py sources (computed once per process). Never fails: git may be absent.
"""

from __future__ import annotations

import functools
import hashlib
import re
import subprocess
from pathlib import Path
from typing import Any

import synthdata

_COMMIT = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


def package_root() -> Path:
    """The folder that holds the `synthdata` package (the checkout's root when run from one)."""
    return Path(synthdata.__file__).resolve().parents[1]


def code_version() -> dict[str, str]:
    """`{"synthdata": version, "commit": sha}` from a git checkout, else `{"synthdata": version,
    "sources_sha256": sha}`. The commit is read on every call (cheap), so a long process reports the
    checkout's commit at the time; uncommitted edits are not part of it."""
    commit = git_commit(package_root())
    if commit is not None:
        return {"synthdata": synthdata.__version__, "commit": commit}
    return {"synthdata": synthdata.__version__, "sources_sha256": sources_sha256()}


def version_label(version: dict[str, Any] | None) -> str:
    """One short name for a recorded code version, e.g. `0.1.0 git e0c95a51c2d4`; "unknown" for None."""
    if not version:
        return "unknown"
    if version.get("commit"):
        return f"{version.get('synthdata')} git {str(version['commit'])[:12]}"
    return f"{version.get('synthdata')} sources {str(version.get('sources_sha256'))[:12]}"


def git_commit(root: Path) -> str | None:
    """HEAD's commit of the checkout at `root` (its own .git only, never a parent folder's), or None."""
    dot_git = root / ".git"
    if not dot_git.exists():
        return None
    try:
        commit = _read_head(dot_git)
    except (OSError, ValueError, UnicodeDecodeError):
        commit = None
    if commit is None:
        try:
            done = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                  timeout=2, check=False)
            commit = done.stdout.strip() if done.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            commit = None
    return commit if commit and _COMMIT.match(commit) else None


def _read_head(dot_git: Path) -> str | None:
    """HEAD from the files: a detached HEAD, a loose ref or packed-refs; worktrees (a .git file
    pointing at their git dir, which names the common dir) included."""
    git_dir = dot_git
    if dot_git.is_file():  # a worktree or submodule: "gitdir: PATH"
        text = dot_git.read_text().strip()
        if not text.startswith("gitdir:"):
            return None
        git_dir = (dot_git.parent / text[len("gitdir:"):].strip()).resolve()
    common = git_dir
    if (git_dir / "commondir").is_file():
        common = (git_dir / (git_dir / "commondir").read_text().strip()).resolve()
    head = (git_dir / "HEAD").read_text().strip()
    if not head.startswith("ref:"):
        return head
    ref = head[len("ref:"):].strip()
    for folder in (git_dir, common):
        loose = folder / ref
        if loose.is_file():
            return loose.read_text().strip()
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == ref:
                return parts[0]
    return None


@functools.lru_cache(maxsize=1)
def sources_sha256() -> str:
    """sha256 over the package's .py files (relative path and bytes, sorted by path)."""
    package = Path(synthdata.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()
