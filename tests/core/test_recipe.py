"""Recipes, overrides and the errors users see for bad configuration."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from synthdata.core.contract import ConfigError
from synthdata.core.recipe import Recipe
from synthdata.core.recipe_loading import (
    available_recipes,
    load_recipe,
    parse_command_line,
    parse_overrides,
    recipe_from_mapping,
    recipe_to_dict,
    recipe_to_yaml,
)


def test_toy_recipe_loads_with_typed_sections():
    recipe = load_recipe("toy")
    assert isinstance(recipe, Recipe)
    assert recipe.name == "toy"
    assert recipe.data.reader == "toy"
    assert isinstance(recipe.train.steps, int)
    assert isinstance(recipe.stages.image.lambda_l1, float)


def test_all_shipped_recipes_validate():
    names = available_recipes()
    assert "toy" in names
    for name in names:
        assert load_recipe(name).name == name


def test_overrides_are_yaml_typed():
    recipe = load_recipe("toy", ["train.steps=7", "seg.model.arch=deeplabv3plus", "seg.synthetic_ratio=0.5",
                                 "data.classes=[a, b]", "produce.out=null"])
    assert recipe.train.steps == 7
    assert recipe.seg.model.arch == "deeplabv3plus"
    assert recipe.seg.synthetic_ratio == 0.5
    assert recipe.data.classes == ["a", "b"]
    assert recipe.produce.out is None


def test_int_is_accepted_for_float_but_not_the_reverse():
    assert load_recipe("toy", ["seg.lr=1"]).seg.lr == 1.0
    with pytest.raises(ConfigError, match="train.steps"):
        load_recipe("toy", ["train.steps=1.5"])


def test_unknown_key_names_the_key_and_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"unknown key 'train.stepz'.*Did you mean 'train.steps'"):
        load_recipe("toy", ["train.stepz=3"])
    with pytest.raises(ConfigError, match=r"'seg.model.encoderr'.*'seg.model.encoder'"):
        load_recipe("toy", ["seg.model.encoderr=resnet34"])


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"'train.steps' should be int, got str"):
        load_recipe("toy", ["train.steps=many"])
    with pytest.raises(ConfigError, match=r"'seg.dice'"):
        load_recipe("toy", ["seg.dice=3"])
    with pytest.raises(ConfigError, match="should be a mapping"):
        load_recipe("toy", ["data=3"])


def test_unknown_recipe_suggests_a_shipped_one():
    with pytest.raises(ConfigError, match=r"unknown recipe 'toi'.*'toy'"):
        load_recipe("toi")


def test_recipe_from_path_and_malformed_yaml(tmp_path):
    good = tmp_path / "mine.yaml"
    good.write_text("data: {reader: toy, height: 32, width: 64}\ntrain: {steps: 3}\n")
    recipe = load_recipe(str(good))
    assert recipe.name == "mine" and recipe.data.height == 32 and recipe.train.steps == 3

    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {reader: toy\n  height: [\n")
    with pytest.raises(ConfigError, match=r"malformed YAML in .*bad.yaml"):
        load_recipe(str(bad))

    not_mapping = tmp_path / "list.yaml"
    not_mapping.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_recipe(str(not_mapping))

    with pytest.raises(ConfigError, match="not found"):
        load_recipe(str(tmp_path / "missing.yaml"))


def test_missing_required_value_is_reported():
    @dataclasses.dataclass
    class Needs:
        path: str

    from synthdata.core.recipe_loading import from_dict

    with pytest.raises(ConfigError, match="missing required value 'path'"):
        from_dict(Needs, {})


def test_parse_overrides_rejects_tokens_without_equals():
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["train.steps"])


def test_command_line_splits_arguments_from_overrides():
    recipe, args = parse_command_line(
        ["recipe=toy", "stage=layout", "run_dir=/tmp/x", "train.steps=4"],
        {"stage": dataclasses.MISSING, "run_dir": dataclasses.MISSING},
    )
    assert args == {"stage": "layout", "run_dir": "/tmp/x"}
    assert recipe.train.steps == 4


def test_command_line_errors():
    with pytest.raises(ConfigError, match="missing required argument 'run_dir"):
        parse_command_line(["recipe=toy"], {"run_dir": dataclasses.MISSING})
    with pytest.raises(ConfigError, match=r"unknown argument 'stag'.*'stage'"):
        parse_command_line(["stag=layout"], {"stage": None})


def test_resolved_recipe_round_trips_through_yaml():
    import yaml

    recipe = load_recipe("toy", ["train.steps=9"])
    again = recipe_from_mapping(yaml.safe_load(recipe_to_yaml(recipe)))
    assert recipe_to_dict(again) == recipe_to_dict(recipe)


def test_config_command_prints_resolved_recipe(capsys):
    from synthdata.cli import main

    assert main(["config", "recipe=toy", "train.steps=11"]) == 0
    out = capsys.readouterr().out
    assert "steps: 11" in out and "reader: toy" in out
    assert main(["config", "recipe=toy", "train.stepz=1"]) == 2
    assert "Did you mean 'train.steps'" in capsys.readouterr().err


def test_cli_unknown_command_suggests(capsys):
    from synthdata.cli import main

    assert main(["produse"]) == 2
    assert "Did you mean 'produce'" in capsys.readouterr().err
    assert main(["--help"]) == 0


@pytest.mark.parametrize("section", ["train", "produce", "seg", "refine", "translate"])
def test_bare_no_for_mixed_precision_means_no(section):
    from synthdata.core.runtime import resolve_mixed_precision

    recipe = load_recipe("toy", parse_overrides([f"{section}.mixed_precision=no"]))
    value = getattr(recipe, section).mixed_precision
    assert value is False  # YAML reads a bare `no` as false ...
    assert resolve_mixed_precision(value, "cpu") == "no"  # ... and it means no autocast


def test_override_mistakes_are_blamed_on_the_command_line_not_the_file(tmp_path):
    """Issue 15, defect 6: a typo in an override is not reported as an error in recipes/toy.yaml."""
    with pytest.raises(ConfigError) as raised:
        load_recipe("toy", ["train.stpes=3"])
    assert str(raised.value).startswith("command line") and "'train.stpes'" in str(raised.value)
    assert "recipes/toy.yaml" not in str(raised.value)
    with pytest.raises(ConfigError, match=r"^command line.*'train.steps' should be int"):
        load_recipe("toy", ["train.steps=many"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {stpes: 3}\n")  # the file's own mistake still names the file
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key 'train.stpes'"):
        load_recipe(str(bad), ["seed=1"])


def test_a_folder_named_like_a_recipe_does_not_hide_the_shipped_one(tmp_path, monkeypatch):
    """Issue 15, defect 6: `mkdir camvid` in the working directory used to give 'recipe file not found'."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "camvid").mkdir()
    assert load_recipe("camvid").name == "camvid" and load_recipe("camvid").data.reader == "camvid"
    (tmp_path / "mine").write_text("seed: 3\n")  # a recipe file without .yaml still works
    assert load_recipe("mine").seed == 3


def test_recipes_are_found_from_a_source_checkout_without_an_install(monkeypatch):
    """`PYTHONPATH=checkout python -m synthdata.cli ...` has no `synthdata.recipes` package (only
    an install maps recipes/ to it); the shipped recipes are then read from the checkout."""
    import importlib.resources

    from synthdata.core import recipe_loading

    real = importlib.resources.files

    def files(name):
        if name == "synthdata.recipes":
            raise ModuleNotFoundError("No module named 'synthdata.recipes'")
        return real(name)

    monkeypatch.setattr(importlib.resources, "files", files)
    assert recipe_loading.recipes_dir() == Path(recipe_loading.__file__).resolve().parents[2] / "recipes"
    assert load_recipe("camvid").name == "camvid"
