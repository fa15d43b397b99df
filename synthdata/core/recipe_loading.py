"""Recipes: YAML files plus dotted command-line overrides, turned into the typed dataclasses of
`synthdata.core.recipe`.

`load_recipe("toy", ["train.steps=10"])` reads `recipes/toy.yaml` (or a path), applies the
overrides (values parsed as YAML), and validates everything against the dataclasses. An unknown
key, a wrong type, a number outside its `Range` or a missing required value raises `ConfigError`
before any work, naming the dotted key and the closest valid key (or the valid values).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import importlib.resources
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml

from synthdata.core.contract import ConfigError
from synthdata.core.recipe import Range, Recipe
from synthdata.core.recipe_help import key_lines, yaml_text

# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def recipes_dir() -> Path:
    """The folder of the shipped recipes (works for editable and regular installs, and for a
    source checkout on PYTHONPATH without an install, where `synthdata.recipes` does not exist)."""
    try:
        return Path(str(importlib.resources.files("synthdata.recipes")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "recipes"


def available_recipes() -> list[str]:
    return sorted(p.stem for p in recipes_dir().glob("*.yaml"))


def resolve_recipe_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"recipe file not found: {path}")
        return path
    shipped = recipes_dir() / f"{name_or_path}.yaml"
    if shipped.is_file() and path.name == name_or_path:  # a shipped name wins over a folder of that name
        return shipped
    if path.is_file():
        return path
    names = available_recipes()
    close = difflib.get_close_matches(name_or_path, names, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise ConfigError(
        f"unknown recipe '{name_or_path}'.{hint} Shipped recipes: {', '.join(names)}; "
        "or give a path to a .yaml file."
    )


def recipe_argument(name: str) -> str:
    """The `recipe=...` of a command a hint suggests for a recipe named `name`: the shipped name;
    else NAME.yaml (.yml) when that file is in the current folder (a file recipe is named after its
    stem, and `recipe=NAME` alone would not find it); else a placeholder for its path."""
    if (recipes_dir() / f"{name}.yaml").is_file():
        return f"recipe={name}"
    for suffix in (".yaml", ".yml"):
        if Path(name + suffix).is_file():
            return f"recipe={name}{suffix}"
    return f"recipe=PATH/TO/{name}.yaml"


class _UniqueKeyLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a key given twice in one mapping (PyYAML keeps the last one
    silently, so a recipe could say two things and mean one)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}' (first at line {seen[key].line + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=_UniqueKeyLoader)  # noqa: S506  (a SafeLoader: no code runs)
    except yaml.YAMLError as e:  # its text spans lines; keep the problem and where it is
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or " ".join(str(e).split())
        raise ConfigError(f"malformed YAML in {path}{where}: {problem}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping of keys, got {type(data).__name__}")
    return data


HELP_FLAGS = ("-h", "--help")


class HelpRequested(Exception):
    """`-h` / `--help` on a command line: the entry point prints its usage and keys, exit 0."""

    def __init__(self, arguments: dict[str, Any] | None = None):
        super().__init__("help requested")
        self.arguments = arguments


def parse_overrides(tokens: list[str]) -> dict[str, Any]:
    """`["a.b=1", "c=x"]` -> `{"a.b": 1, "c": "x"}` with values typed by YAML."""
    out: dict[str, Any] = {}
    if any(token in HELP_FLAGS for token in tokens):
        raise HelpRequested()
    for token in tokens:
        if "=" not in token:
            raise ConfigError(f"expected key=value, got '{token}'")
        key, raw = token.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"empty key in '{token}'")
        try:
            out[key] = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError as e:
            raise ConfigError(f"cannot parse value of {key}: {raw!r} ({e})") from e
    return out


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {dotted}: {'.'.join(parts[: i + 1])} is not a section")
        node = child
    node[parts[-1]] = value


def load_recipe(name_or_path: str = "toy", overrides: list[str] | dict[str, Any] | None = None) -> Recipe:
    """Read a recipe, apply dotted overrides and validate it into a `Recipe`."""
    path = resolve_recipe_path(name_or_path)
    tree = read_yaml(path)
    tree.setdefault("name", path.stem)
    if isinstance(overrides, list):
        overrides = parse_overrides(overrides)
    if not overrides:
        return from_dict(Recipe, tree, source=str(path))
    from_dict(Recipe, copy.deepcopy(tree), source=str(path))  # the file's own mistakes name the file
    for key, value in overrides.items():
        _set_dotted(tree, key, value)
    return from_dict(Recipe, tree, source=f"command line (over {path.name})")


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    return dataclasses.asdict(recipe)


def recipe_to_yaml(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False)


def recipe_from_mapping(tree: dict[str, Any], source: str = "<recipe>") -> Recipe:
    """Validate a plain dict (e.g. stored in a checkpoint or manifest) into a `Recipe`."""
    return from_dict(Recipe, tree, source=source)


# --------------------------------------------------------------------------------------------
# dict -> dataclass with type checking
# --------------------------------------------------------------------------------------------


class OutOfRange(ConfigError):
    """A number of the right type outside its key's `Range`."""


def from_dict(cls: type, data: Any, source: str = "<recipe>", prefix: str = "") -> Any:
    if not isinstance(data, dict):
        where = f"'{prefix.rstrip('.')}' should be a mapping" if prefix else "a recipe must be a mapping"
        raise ConfigError(f"{source}: {where}, got {data!r}")
    hints = typing.get_type_hints(cls, include_extras=True)  # with the `Range`s of Annotated keys
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            dotted = f"{prefix}{key}"
            valid = [f"{prefix}{name}" for name in fields]
            close = difflib.get_close_matches(dotted, valid, n=1, cutoff=0.5)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"{source}: unknown key '{dotted}'.{hint} Valid keys here: {', '.join(valid)}"
            )
    kwargs = {}
    for name, f in fields.items():
        dotted = f"{prefix}{name}"
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], source, dotted)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{source}: missing required value '{dotted}'")
    for first, second in getattr(cls, "PAIRED", ()):  # keys that mean something only together
        if (kwargs.get(first) is None) != (kwargs.get(second) is None):
            given, missing = (first, second) if kwargs.get(first) is not None else (second, first)
            raise ConfigError(f"{source}: '{prefix}{given}' is set but '{prefix}{missing}' is not; set both or neither")
    return cls(**kwargs)


def _type_name(tp: Any) -> str:
    name = getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
    return re.sub(r"Annotated\[([^\[\],]+), Range\([^)]*\)\]", r"\1", name)  # list[int], not its Range


def _coerce(tp: Any, value: Any, source: str, dotted: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        return from_dict(tp, value, source, prefix=f"{dotted}.")
    if origin is Annotated:  # a number with its Range (core.recipe)
        value = _coerce(args[0], value, source, dotted)
        for allowed in tp.__metadata__:
            if isinstance(allowed, Range) and value not in allowed:
                raise OutOfRange(f"{source}: '{dotted}' must be {allowed}, got {value!r}")
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, source, dotted)
            except OutOfRange:
                raise  # the type fits, the value does not: say so
            except ConfigError as e:
                errors.append(e)
        raise ConfigError(f"{source}: '{dotted}' should be {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{source}: '{dotted}' must be one of {list(args)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: '{dotted}' should be a list, got {value!r}")
        (item,) = args or (Any,)
        return [_coerce(item, v, source, f"{dotted}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{dotted}' should be a mapping, got {value!r}")
        kt, vt = args or (Any, Any)
        return {
            _coerce(kt, k, source, dotted): _coerce(vt, v, source, f"{dotted}.{k}")
            for k, v in value.items()
        }
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # e.g. split=2007 or a numeric file name
    elif isinstance(value, tp):
        return value
    raise ConfigError(
        f"{source}: '{dotted}' should be {_type_name(tp)}, got {type(value).__name__} {value!r}"
    )


# --------------------------------------------------------------------------------------------
# Command lines: recipe=NAME, entry-point arguments (stage=, run_dir=, ...) and dotted overrides
# --------------------------------------------------------------------------------------------


def default_run_dir(recipe: Recipe) -> Path:
    """Where generator stages train and produce writes when no `run_dir=` is given: `runs/NAME`."""
    return Path("runs") / recipe.name


def parse_command_line(
    argv: list[str], arguments: dict[str, Any] | None = None
) -> tuple[Recipe, dict[str, Any]]:
    """Split `key=value` tokens into the recipe (with overrides) and the entry point's arguments.

    `arguments` maps each argument the entry point accepts to its default; a default of
    `dataclasses.MISSING` makes it required. Returns `(recipe, args)`.
    """
    arguments = dict(arguments or {})
    if any(token in HELP_FLAGS for token in argv):
        raise HelpRequested(arguments)
    values = parse_overrides(argv)
    recipe_name = values.pop("recipe", "toy")
    if not isinstance(recipe_name, str):
        recipe_name = str(recipe_name)
    args: dict[str, Any] = {}
    overrides: dict[str, Any] = {}
    top_level = {f.name for f in dataclasses.fields(Recipe)}
    for key, value in values.items():
        if key in arguments:
            args[key] = value
        elif "." in key or key in top_level:
            overrides[key] = value
        else:
            valid = sorted(set(arguments) | top_level | {"recipe"})
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"unknown argument '{key}'.{hint} Arguments: {', '.join(sorted(arguments))}; "
                "recipe keys are dotted (e.g. train.steps=100)."
            )
    for key, default in arguments.items():
        if key not in args:
            if default is dataclasses.MISSING:
                raise ConfigError(f"missing required argument '{key}=...'")
            args[key] = default
    recipe = load_recipe(recipe_name, overrides)
    return recipe, args


def command_help(doc: str | None, arguments: dict[str, Any] | None) -> str:
    """The `--help` text of an entry point: its docstring, its own arguments, then every recipe key
    with its default, valid values and meaning (`core.recipe_help.key_lines`)."""
    lines = [(doc or "synthdata COMMAND recipe=NAME key=value ...").strip(), ""]
    if arguments is not None:
        own = [f"{k}=... (required)" if v is dataclasses.MISSING else f"{k}={yaml_text(v)}" for k, v in arguments.items()]
        lines.append("arguments: " + (", ".join(own) if own else "none besides the recipe"))
        lines.append(f"recipe=NAME|PATH (default toy; shipped: {', '.join(available_recipes())})")
        lines.append("recipe keys, set as section.key=value (YAML, null for None): key=default (what the default "
                     "recipe toy sets instead), valid values, meaning")
        try:
            toy = load_recipe("toy")
        except ConfigError:  # no shipped recipes (a bare source tree): the schema's defaults alone
            toy = None
        lines += key_lines(Recipe(), toy, "toy")
    return "\n".join(lines)
