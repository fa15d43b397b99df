"""Every command runs in the three documented forms: `synthdata X`, `python -m synthdata.X` and as a
file (`accelerate launch synthdata/X.py`, which runs the file as `__main__` with synthdata/ first on
sys.path). The package has no import circle and no sibling module shadows another package."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import synthdata
from synthdata.cli import COMMANDS
from synthdata.cli import main as cli

PACKAGE = Path(synthdata.__file__).resolve().parent
MODULES = {name: module for name, (module, _) in COMMANDS.items()}

# One interpreter runs every command both ways (torch is imported once): `python synthdata/X.py`
# puts the script's folder first on sys.path, `python -m` does not.
RUNNER = r"""
import contextlib, io, os, runpy, sys
pkg, names = sys.argv[1], sys.argv[2:]
for name in names:
    for form in ("file", "module"):
        path = sys.path[:]
        if form == "file":
            sys.path.insert(0, pkg)
        sys.argv = [name, "--help"]
        out = io.StringIO()
        code = 0
        try:
            with contextlib.redirect_stdout(out):
                if form == "file":
                    runpy.run_path(os.path.join(pkg, name + ".py"), run_name="__main__")
                else:
                    runpy.run_module("synthdata." + name, run_name="__main__", alter_sys=True)
        except SystemExit as e:
            code = e.code
        sys.path[:] = path
        print(form, name, code, len(out.getvalue().strip()), flush=True)
"""


def test_every_command_runs_as_a_file_and_as_a_module():
    files = sorted(module.split(".")[-1] for module in MODULES.values())
    result = subprocess.run([sys.executable, "-c", RUNNER, str(PACKAGE), *files], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split() for line in result.stdout.splitlines() if line.split()[:1] in (["file"], ["module"])]
    assert len(rows) == 2 * len(files), result.stdout + result.stderr[-2000:]
    for form, name, code, printed in rows:
        assert code in ("0", "None") and int(printed) > 0, (form, name, code, result.stderr[-2000:])


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_runs_from_the_console_script(name, capsys):
    assert cli([name, "--help"]) == 0
    assert capsys.readouterr().out.strip()


def test_every_command_has_one_launch_file_and_they_are_the_same_file():
    """The launch files `synthdata/X.py` (what `accelerate launch synthdata/X.py` runs) hold no code
    of their own: byte for byte one file, which runs the command module `synthdata.commands.X`."""
    launch = {module.split(".")[-1]: PACKAGE / (module.split(".")[-1] + ".py") for module in MODULES.values()}
    assert all(module.startswith("synthdata.commands.") for module in MODULES.values())
    assert len({path.read_bytes() for path in launch.values()}) == 1
    kept = {p.stem for p in PACKAGE.glob("*.py")} - set(launch)
    assert kept == {"__init__", "__main__", "api", "cli"}, kept  # the rest lives in folders


def test_python_dash_m_help_and_version_answer_without_torch():
    """`python -m synthdata.X --help` and `--version` go through the launch file and `synthdata.cli`
    before the command module (and torch) is imported."""
    code = ("import runpy, sys; sys.argv = ['produce', '--help']\n"
            "try:\n    runpy.run_module('synthdata.produce', run_name='__main__', alter_sys=True)\n"
            "except SystemExit as e:\n    assert e.code in (0, None), e.code\n"
            "assert 'torch' not in sys.modules and 'synthdata.commands.produce' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "produce.num_samples" in done.stdout
    done = subprocess.run([sys.executable, "-m", "synthdata.segment", "--version"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("synthdata ")


def _imports(path: Path) -> set[str]:
    """synthdata modules imported at the top level of `path` (function-level imports excluded)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("synthdata"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("synthdata"))
    return found


def test_the_package_has_no_import_circle():
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph = {m: {i for i in _imports(p) if i in modules and i != m} for m, p in modules.items()}
    # a package's __init__ importing its own submodules is not a circle
    graph = {m: {i for i in deps if not i.startswith(m + ".")} for m, deps in graph.items()}
    seen, stack, circles = set(), [], []

    def visit(m):
        if m in stack:
            circles.append(stack[stack.index(m):] + [m])
            return
        if m in seen:
            return
        seen.add(m)
        stack.append(m)
        for d in sorted(graph[m]):
            visit(d)
        stack.pop()

    for m in sorted(graph):
        visit(m)
    assert not circles, circles[:3]


def test_no_folder_is_named_like_a_command_or_a_well_known_package():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    shadowed = {"datasets", "evaluate", "accelerate", "torch", "webdataset", "yaml", "inspect", "tqdm"}
    assert not folders & (set(COMMANDS) | shadowed)


def test_every_package_folder_is_installed():
    """pyproject.toml lists the packages explicitly: a new folder missing there would be absent
    from a non-editable install (the tests, on an editable one, would not notice)."""
    import tomllib

    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(PACKAGE.parent).parts) for p in PACKAGE.rglob("__init__.py")}
    assert found <= listed, sorted(found - listed)


def test_command_code_lives_in_commands_only():
    """Every `main` and every command-line parse is in synthdata/commands/ (issue 36): the library
    folders hold what the commands call, the `synthdata evaluate WHAT` mains included."""
    library = [p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE and "commands" not in p.parts]
    found = sorted(str(p.relative_to(PACKAGE)) for p in library
                   if re.search(r"^def _?main\(|parse_command_line\(|run_main\(", p.read_text(), re.M))
    # where the two helpers are defined, and the help that reads commands' sources for their keys
    assert found == ["core/entry.py", "core/recipe_help.py", "core/recipe_loading.py"], found
