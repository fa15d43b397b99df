"""Which code made a result: the git commit of a checkout, read from .git (loose refs, packed refs,
worktrees, a detached HEAD), else a sha256 over the package's sources; never an error."""

from __future__ import annotations

import synthdata.core.code_version as cv

SHA = "0123456789abcdef0123456789abcdef01234567"


def test_the_commit_is_read_from_the_checkouts_git_files(tmp_path):
    git = tmp_path / "repo" / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "refs" / "heads" / "main").write_text(SHA + "\n")
    assert cv.git_commit(tmp_path / "repo") == SHA
    (git / "refs" / "heads" / "main").unlink()  # after `git gc`: packed
    (git / "packed-refs").write_text(f"# pack-refs with: peeled fully-peeled sorted\n{SHA} refs/heads/main\n")
    assert cv.git_commit(tmp_path / "repo") == SHA
    (git / "HEAD").write_text("f" * 40 + "\n")  # detached
    assert cv.git_commit(tmp_path / "repo") == "f" * 40
    # a worktree: .git is a file naming its git dir, which names the common dir
    worktree = git / "worktrees" / "wt"
    worktree.mkdir(parents=True)
    (worktree / "HEAD").write_text("ref: refs/heads/main\n")
    (worktree / "commondir").write_text("../..\n")
    (tmp_path / "wt").mkdir()
    (tmp_path / "wt" / ".git").write_text(f"gitdir: {worktree}\n")
    assert cv.git_commit(tmp_path / "wt") == SHA


def test_without_a_checkout_the_sources_are_hashed_and_nothing_fails(tmp_path, monkeypatch):
    assert cv.git_commit(tmp_path) is None  # no .git here (a parent folder's is never used)
    monkeypatch.setattr(cv, "package_root", lambda: tmp_path)
    version = cv.code_version()
    assert set(version) == {"synthdata", "sources_sha256"} and len(version["sources_sha256"]) == 64
    assert cv.code_version() == version and cv.version_label(version).startswith("0.")
    (tmp_path / ".git").mkdir()  # a broken checkout, and no git program: still no error
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/gone\n")
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert cv.git_commit(tmp_path) is None and "sources_sha256" in cv.code_version()
    assert cv.version_label(None) == "unknown"
