"""Dataset readers (one per dataset family) and the procedural toy world.

`make_reader(cfg.data, "train")` returns the reader named by `data.reader`.
"""

from synthdata.data.readers import (
    ade20k,  # noqa: F401  (registers "ade20k")
    camvid,  # noqa: F401  (registers "camvid")
    cityscapes,  # noqa: F401  (registers "cityscapes")
    folder,  # noqa: F401  (registers "folder")
    particles,  # noqa: F401  (registers "particles")
    toy,  # noqa: F401  (registers "toy")
    voc,  # noqa: F401  (registers "voc")
)
from synthdata.data.readers.base import READERS, ClassInfo, DatasetError, DatasetReader, make_reader
