"""Segmentation: segmenters (segmentation-models-pytorch) and their training on real + synthetic
data (`training`, with the FreeMask loss filter in `segmenters`), SegGAN refinement (`seggan`) and
segmentation as translation (`translation`, `cyclegan`)."""
