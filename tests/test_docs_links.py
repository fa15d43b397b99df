"""Every relative link in README.md, CONTRIBUTING.md and docs/ points to a file that exists and, with
`#anchor`, to a heading in it (issue 36 moved sections between files; a link left behind fails)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]


def anchor(title: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def test_every_relative_link_and_anchor_resolves():
    headings = {p: {anchor(t) for t in re.findall(r"^#+ (.*)$", p.read_text(), re.M)} for p in FILES}
    broken = []
    for path in FILES:
        text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # code blocks hold no links
        for target, fragment in re.findall(r"\]\(([^)\s#]*)(?:#([\w\-]+))?\)", text):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            file = (path.parent / target).resolve() if target else path
            if not file.exists():
                broken.append(f"{path.name}: {target} does not exist")
            elif fragment and file in headings and fragment not in headings[file]:
                broken.append(f"{path.name}: {target}#{fragment} names no heading")
    assert not broken, "\n".join(broken)
