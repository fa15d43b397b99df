"""Dataset readers (one per dataset family) and the procedural toy world.

`make_reader(cfg.data, "train")` returns the reader named by `data.reader`; importing this
package registers every reader.
"""

from synthdata.data.readers import ade20k, camvid, cityscapes, folder, particles, toy, voc
from synthdata.data.readers.base import READERS, DatasetReader, make_reader

__all__ = ["READERS", "DatasetReader", "make_reader", "ade20k", "camvid", "cityscapes", "folder", "particles",
           "toy", "voc"]
