"""Dataset readers (one per dataset family) and the procedural toy world.

`make_reader(cfg.data, "train")` returns the reader named by `data.reader`.
"""

from synthdata.datasets.base import READERS, ClassInfo, DatasetError, DatasetReader, make_reader
from synthdata.datasets import ade20k  # noqa: F401  (registers "ade20k")
from synthdata.datasets import camvid  # noqa: F401  (registers "camvid")
from synthdata.datasets import cityscapes  # noqa: F401  (registers "cityscapes")
from synthdata.datasets import folder  # noqa: F401  (registers "folder")
from synthdata.datasets import particles  # noqa: F401  (registers "particles")
from synthdata.datasets import toy  # noqa: F401  (registers "toy")
from synthdata.datasets import voc  # noqa: F401  (registers "voc")
