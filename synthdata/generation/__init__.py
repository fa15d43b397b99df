"""Generation: the three stages (layout GAN, SPADE depth and image) and their training loop
(`training`), the trained-generator sampler (`sampler`), layout sources, quality controls, latent
tools and production of synthetic shards (`production`)."""
