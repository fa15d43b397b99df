"""Generation: the three stages (layout GAN, SPADE depth and image) and their training loop
(`training`), the trained-generator sampler (`sampler`), layout sources, quality controls, latent
tools and production of synthetic shards (`production`)."""

# the modules other folders may import (tests/test_public_api.py checks it);
# internal: encodings, latent, layout_sources, quality_controls, shard_plan
PUBLIC_MODULES = (
    "image_sources",
    "production",
    "sampler",
    "stages",
    "training",
)
