"""Segmentation: training segmenters (built and loaded by `synthdata.models.segmenters`) on real +
synthetic data (`training`, with the FreeMask loss filter in `freemask`), SegGAN refinement
(`seggan`) and segmentation as translation (`translation`, `cyclegan`)."""

# the modules other folders may import (tests/test_public_api.py checks it);
# internal: cyclegan, freemask
PUBLIC_MODULES = (
    "seggan",
    "training",
    "translation",
)
