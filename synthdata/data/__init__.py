"""Data: dataset readers (`readers/`), the WebDataset shard format (`shards`) and the streaming
loader that mixes real and synthetic sources (`loader`).

    from synthdata.data import Source, make_loader
"""

from synthdata.data.loader import Source, make_loader, source_classes

# the modules other folders may import (tests/test_public_api.py checks it);
# internal: transforms
PUBLIC_MODULES = (
    "loader",
    "readers",
    "shard_writer",
    "shards",
)

__all__ = ["Source", "make_loader", "source_classes"]
