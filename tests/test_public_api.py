"""Each folder of synthdata declares what other folders may import from it (`PUBLIC_MODULES` in its
`__init__`, and the names of its `__all__`): a module imported across folders that is not declared
fails here, naming both modules (issue 36). The layers themselves are import-linter's contract in
`make test`."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "synthdata"
FOLDERS = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())


def declared(folder: str) -> set[str]:
    package = importlib.import_module(f"synthdata.{folder}")
    return set(package.PUBLIC_MODULES) | set(getattr(package, "__all__", ()))


def test_every_folder_declares_its_public_modules_and_they_exist():
    for folder in FOLDERS:
        modules = {p.stem for p in (PACKAGE / folder).glob("*.py")} | {
            p.name for p in (PACKAGE / folder).iterdir() if (p / "__init__.py").is_file()}
        missing = set(importlib.import_module(f"synthdata.{folder}").PUBLIC_MODULES) - modules
        assert not missing, (folder, missing)


def test_folders_import_only_what_another_folder_declares():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).parts
        own = parts[0] if len(parts) > 1 else None
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("synthdata.")):
                continue
            target = node.module.split(".")
            if len(target) < 2 or target[1] == own or target[1] not in FOLDERS:
                continue
            names = [target[2]] if len(target) > 2 else [alias.name for alias in node.names]
            found += [f"{path.relative_to(PACKAGE)} imports synthdata.{target[1]}.{name}"
                      for name in names if name not in declared(target[1])]
    assert not found, "undeclared imports across folders (declare the module in PUBLIC_MODULES, or keep it inside):\n" \
        + "\n".join(found)


def test_no_module_imports_one_that_imports_it_back():
    """No file circle, type-only imports included (issue 36: demo <-> demo_report and study <->
    study_report were circles through `TYPE_CHECKING` imports). A package's `__init__` that imports
    its own modules to register them (the readers) is not a circle of files."""
    modules = {".".join(p.with_suffix("").relative_to(PACKAGE.parent).parts).removesuffix(".__init__"): p
               for p in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges[name] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in modules:
                edges[name] |= {node.module} | {f"{node.module}.{a.name}" for a in node.names} & modules.keys()
        edges[name] -= {n for n in edges[name] if n == name or name.startswith(n + ".") or n.startswith(name + ".")}
    circles = sorted({tuple(sorted((a, b))) for a in edges for b in edges[a] if a in edges.get(b, ())})
    longer = []
    for start in edges:  # longer circles: a path back to the start
        stack, seen = [start], set()
        while stack:
            node = stack.pop()
            for nxt in edges[node]:
                if nxt == start:
                    longer.append(start)
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
    assert not circles and not longer, (circles, sorted(set(longer)))
