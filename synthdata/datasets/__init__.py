"""Dataset readers (one per dataset family) and the procedural toy world.

`make_reader(cfg.data, "train")` returns the reader named by `data.reader`.
"""

from synthdata.datasets.base import READERS, ClassInfo, DatasetError, DatasetReader, make_reader
