"""Real-pixel synthesis: the segment bank of a training split (`segment_bank`, `bank_building`),
composite texturing of layouts with its segments (`composite`, `pipeline`), class-aware copy-paste
of its objects (`copy_paste`), the same as an albumentations transform (`copy_paste_transform`), and
flat class colours, the baseline without pixels (`flat`). Nothing here trains: every pixel comes from
real images (flat: their per-class means)."""

# the modules other folders may import (tests/test_public_api.py checks it);
# internal: composite
PUBLIC_MODULES = (
    "bank_building",
    "copy_paste",
    "copy_paste_transform",
    "flat",
    "pipeline",
    "segment_bank",
)
