"""synthdata: synthetic (layout, depth, image) data for semantic-segmentation training.

The Python API (`synthdata.api`): `load_recipe`, `build_bank`, `produce_shards` and `evaluate_miou`,
imported on first use, so `import synthdata` imports no torch. (`synthdata.produce` is the command's
module, `synthdata.produce.main`; the API's function has its own name.)
"""

import importlib

__version__ = "0.1.0"

# name -> the module that holds it (looked up by name, so the package imports nothing heavy)
_API = {"load_recipe": "synthdata.core.recipe_loading", "build_bank": "synthdata.api",
        "produce_shards": "synthdata.api", "evaluate_miou": "synthdata.api"}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'synthdata' has no attribute {name!r}")
    return getattr(importlib.import_module(_API[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
