"""synthdata: synthetic (layout, depth, image) data for semantic-segmentation training."""

__version__ = "0.1.0"
