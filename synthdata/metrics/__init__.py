"""Measures of what synthetic data is worth: mIoU and how every command scores a segmenter
(`miou`, `evaluation`), intervals, FID/KID, layout fidelity, layout statistics and the layout
check, sample sources and reports. The commands that run them live in `synthdata.commands`."""

# the modules other folders may import (tests/test_public_api.py checks it)
PUBLIC_MODULES = (
    "evaluation",
    "external_models",
    "fid",
    "fidelity",
    "inception",
    "intervals",
    "layout_check",
    "layout_stats",
    "miou",
    "report",
    "sources",
)
