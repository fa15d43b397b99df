"""`--help` text: every recipe key with its default, valid values and meaning (the comment beside
its field in `core/recipe.py`, read from the source), and a command's docstring and arguments read
from its source without importing it, so `synthdata COMMAND --help` answers before torch loads."""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib.util
import io
import tokenize
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml

from synthdata.core import recipe as recipe_module
from synthdata.core.recipe import Range, Recipe

# --------------------------------------------------------------------------------------------
# Recipe keys: comments as data, types as valid values
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def field_comments() -> dict[str, dict[str, str]]:
    """`{class name: {field: meaning}}` from `core/recipe.py`: the comment lines right above a field
    plus the comment at the end of its line(s), joined. Empty when the source is not readable."""
    try:
        source = Path(str(recipe_module.__file__)).read_text(encoding="utf-8")
    except OSError:
        return {}
    comments: dict[int, tuple[str, bool]] = {}  # line -> (text, alone on its line)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = (tok.string.lstrip("#").strip(), tok.line.lstrip().startswith("#"))
    out: dict[str, dict[str, str]] = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        fields = out.setdefault(node.name, {})
        for item in node.body:
            if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
                continue
            above, line = [], item.lineno - 1
            while line in comments and comments[line][1]:
                above.insert(0, comments[line][0])
                line -= 1
            beside = [comments[n][0] for n in range(item.lineno, (item.end_lineno or item.lineno) + 1)
                      if n in comments and not comments[n][1]]
            fields[item.target.id] = " ".join(part for part in above + beside if part)
    return out


def _comment(cls: type, name: str) -> str:
    """The comment of field `name`, from the first class of `cls`'s MRO that declares it."""
    for klass in cls.__mro__:
        fields = field_comments().get(klass.__name__, {})
        if name in fields:
            return fields[name]
    return ""


def type_text(tp: Any) -> str:
    """The values a key takes: `int >= 1`, `float in (0, 1) | null`, `dcgan | style`, `list[float]`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        ranges = [str(m) for m in tp.__metadata__ if isinstance(m, Range)]
        return " ".join([type_text(args[0]), *ranges])
    if origin in (Union, types.UnionType):
        parts = [type_text(a) for a in args if a is not type(None)]
        return " | ".join(parts + (["null"] if type(None) in args else []))
    if origin is Literal:
        return " | ".join(yaml_text(a) for a in args)
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(type_text(a) for a in args)}]" if args else origin.__name__
    if tp is Any:
        return "any"
    return getattr(tp, "__name__", str(tp))


def yaml_text(value: Any) -> str:
    """A value as written on the command line (YAML): null, true, [0.0, 0.99], {train: 512}."""
    if isinstance(value, str) and (" " in value or value == ""):
        return repr(value)
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6).strip()
    return text[: -len("...")].strip() if text.endswith("\n...") else text


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def key_lines(defaults: Any = None, recipe: Any = None, recipe_name: str = "toy", prefix: str = "") -> list[str]:
    """Per section, a heading (`data: its docstring`) and one line per key,
    `  data.height=128 (toy: 64)  int  meaning`: the default of the schema (`defaults`, a `Recipe()`
    or one of its sections), what `recipe` sets where it differs, valid values and the comment beside
    the field; columns aligned within a section."""
    defaults = Recipe() if defaults is None else defaults
    cls = type(defaults)
    hints = typing.get_type_hints(cls, include_extras=True)
    rows, sections = [], []
    for f in dataclasses.fields(cls):
        value = getattr(defaults, f.name)
        given = getattr(recipe, f.name) if recipe is not None else value
        if dataclasses.is_dataclass(hints[f.name]):
            sections += key_lines(value, given if recipe is not None else None, recipe_name, f"{prefix}{f.name}.")
            continue
        key = f"{prefix}{f.name}={yaml_text(value)}" + (f" ({recipe_name}: {yaml_text(given)})" if given != value else "")
        rows.append((key, type_text(hints[f.name]), _comment(cls, f.name)))
    if not rows:
        return sections
    doc = cls.__doc__ if cls.__doc__ and not cls.__doc__.startswith(f"{cls.__name__}(") else ""  # not dataclass's
    head = f"{prefix.rstrip('.') or '(top level)'}:" + (f" {_one_line(doc)}" if doc else "")
    width_key = min(max(len(r[0]) for r in rows), 40)
    width_type = min(max(len(r[1]) for r in rows), 24)
    lines = [f"  {key:<{width_key}}  {tp:<{width_type}}  {meaning}".rstrip() for key, tp, meaning in rows]
    return [head, *lines, *sections]


# --------------------------------------------------------------------------------------------
# A command's help without importing it
# --------------------------------------------------------------------------------------------


class _NotStatic(Exception):
    """The command's arguments are not a literal in its source: import it instead."""


def _literal(node: ast.AST, assignments: dict[str, ast.AST]) -> Any:
    if isinstance(node, ast.Attribute) and node.attr == "MISSING":  # dataclasses.MISSING
        return dataclasses.MISSING
    if isinstance(node, ast.Name):
        if node.id == "MISSING":
            return dataclasses.MISSING
        if node.id in assignments:
            return _literal(assignments[node.id], assignments)
        raise _NotStatic(node.id)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise _NotStatic("**")
        return {_literal(k, assignments): _literal(v, assignments) for k, v in zip(node.keys, node.values)}
    try:
        return ast.literal_eval(node)
    except ValueError as e:
        raise _NotStatic(ast.dump(node)) from e


def _parsed(module_name: str) -> tuple[ast.Module, dict[str, ast.AST], ast.FunctionDef] | None:
    """A module's syntax tree, its module-level assignments and its `_main`, found without importing it."""
    try:
        spec = importlib.util.find_spec(module_name)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            return None
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    except (ImportError, OSError, SyntaxError, ValueError):
        return None
    assignments: dict[str, ast.AST] = {}
    main = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            assignments[node.targets[0].id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            assignments[node.target.id] = node.value
        elif isinstance(node, ast.FunctionDef) and node.name == "_main":
            main = node
    return None if main is None else (tree, assignments, main)


def _calls(main: ast.FunctionDef, name: str) -> list[ast.Call]:
    return [node for node in ast.walk(main)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name]


def static_command(module_name: str) -> tuple[str | None, dict[str, Any]] | None:
    """`(docstring, arguments)` of a command module that reads its command line with
    `parse_command_line(argv, ARGUMENTS)` in `_main`, from its source alone (ARGUMENTS a literal,
    `MISSING` for required); None otherwise, and the caller imports the module and asks it."""
    parsed = _parsed(module_name)
    if parsed is None:
        return None
    tree, assignments, main = parsed
    for call in _calls(main, "parse_command_line"):
        if call.args and isinstance(call.args[0], ast.Name) and call.args[0].id == "argv":
            given = call.args[1] if len(call.args) > 1 else next(
                (k.value for k in call.keywords if k.arg == "arguments"), None)
            try:
                arguments = {} if given is None else _literal(given, assignments)
            except _NotStatic:
                return None
            return (ast.get_docstring(tree, clean=False), arguments) if isinstance(arguments, dict) else None
    return None


def static_usage(module_name: str) -> str | None:
    """The `USAGE` string a command without recipe keys (`inspect`) prints for `--help`, when its
    `_main` prints that module-level literal; None otherwise."""
    parsed = _parsed(module_name)
    if parsed is None:
        return None
    _, assignments, main = parsed
    for call in _calls(main, "print"):
        if len(call.args) == 1 and isinstance(call.args[0], ast.Name) and call.args[0].id == "USAGE":
            try:
                usage = _literal(call.args[0], assignments)
            except _NotStatic:
                return None
            return usage if isinstance(usage, str) else None
    return None
