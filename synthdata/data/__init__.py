"""Data: dataset readers (`readers/`), the WebDataset shard format (`shards`) and the streaming
loader that mixes real and synthetic sources (`loader`).

    from synthdata.data import Source, make_loader
"""

from synthdata.data.loader import Source, make_loader, source_classes

__all__ = ["Source", "make_loader", "source_classes"]
