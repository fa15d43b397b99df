"""The image source is chosen in one place (`image_source`), and only there is the composite arch
tested: training, production and studies ask the source."""

import re
from pathlib import Path

import pytest

from synthdata.core.recipe_loading import load_recipe
from synthdata.experiments.variants import stages_needed
from synthdata.generation.image_sources import CompositeImages, FlatImages, GanImages, image_source

PACKAGE = Path(__file__).resolve().parents[2] / "synthdata"


@pytest.mark.parametrize("arch, has_depth, use_depth, want", [
    ("spade", True, True, ["depth", "image"]),
    ("spade", True, False, ["image"]),
    ("pix2pix", False, True, ["image"]),
    ("composite", True, True, ["image"]),  # depth from the bank's segments: no depth stage
    ("flat", True, True, ["image"]),  # class colours: no depth, nothing to train
])
def test_each_arch_names_its_source_and_stages(arch, has_depth, use_depth, want):
    recipe = load_recipe("toy", {"stages.image.arch": arch, "data.has_depth": has_depth,
                                 "stages.image.use_depth": use_depth})
    source = image_source(recipe)
    assert type(source) is {"composite": CompositeImages, "flat": FlatImages}.get(arch, GanImages)
    assert source.stages(recipe) == want
    assert source.trains_generator is (arch in ("spade", "pix2pix"))
    assert source.real_pixels_everywhere is (arch == "composite")
    assert source.trains_image_network(recipe) is (arch in ("spade", "pix2pix"))
    if arch == "composite":  # its harmoniser is a network
        assert source.trains_image_network(load_recipe("toy", {"stages.image.arch": arch, "stages.image.harmonise": "spade"}))
    assert stages_needed(recipe) == ["layout"] + want
    real = load_recipe("toy", {"stages.image.arch": arch, "data.has_depth": has_depth,
                               "stages.image.use_depth": use_depth, "produce.layouts": "real"})
    assert stages_needed(real) == want


def test_only_the_source_and_the_stage_specs_test_the_composite_arch():
    """A new image source is one class in image_sources.py, not branches across the package."""
    pattern = re.compile(r"""arch\s*[!=]=\s*["']composite["']|is_composite""")
    found = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if pattern.search(p.read_text()))
    assert found == ["generation/image_sources.py", "generation/stages.py"]
