"""The demo's budgets (`demo.budget=tiny|small|full`): sizes and step counts of each, shared by
the demo (`demo`) and its report (`demo_report`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    """Sizes and step counts of one demo budget."""

    height: int
    width: int
    real_train: int  # labelled toy scenes the generators and segmenters may learn from
    val: int  # held-out toy scenes for every evaluation
    layout_steps: int
    depth_steps: int
    image_steps: int
    gan_samples: int  # samples of the trained generators: pictures, layout statistics, fidelity, FID
    samples: int  # synthetic samples the study produces for the segmenter's synthetic arm
    shard_size: int
    seg_steps: int
    seeds: int  # segmenter seeds per arm of the study
    gen_channels: int  # ngf/ndf of the generators
    batch_size: int
    image_discriminators: int  # scales of the image stage's multi-scale discriminator


BUDGETS = {
    # CI: seconds; proves that every stage runs and the report is written, nothing else
    # (2 seeds, so the interval over seeds is computed and reported)
    "tiny": Budget(32, 64, real_train=16, val=16, layout_steps=3, depth_steps=3, image_steps=3,
                   gan_samples=32, samples=32, shard_size=16, seg_steps=4, seeds=2, gen_channels=8,
                   batch_size=4, image_discriminators=1),
    # the README's main command, sized to stay under 15 minutes on a 2-core CPU without bf16 (an
    # idle 2-vCPU AMD EPYC, fp32): stage speeds there, `python tools/bench_train.py speed` with
    # these sizes, were 1.78 / 0.88 / 0.82 it/s at 16 channels (1.14 / 0.46 / 0.47 at 24) and the
    # segmenter 1.6 steps/s, so the generators get 200 / 60 / 100 steps (pictures and fidelity
    # only: the study's synthetic arm needs no generator) and each of the 4 study cells 150 steps.
    "small": Budget(64, 128, real_train=64, val=128, layout_steps=200, depth_steps=60, image_steps=100,
                    gan_samples=128, samples=512, shard_size=128, seg_steps=150, seeds=2, gen_channels=16,
                    batch_size=8, image_discriminators=1),
    # a longer run for a machine with a GPU or more time
    "full": Budget(128, 256, real_train=256, val=256, layout_steps=5000, depth_steps=3000, image_steps=6000,
                   gan_samples=5000, samples=20000, shard_size=500, seg_steps=4000, seeds=3, gen_channels=64,
                   batch_size=16, image_discriminators=2),
}


__all__ = ["BUDGETS", "Budget"]
