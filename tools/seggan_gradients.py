"""How hard each term of SegGAN's loss pulls on a segmenter: the gradient it gives the weights.

    python tools/seggan_gradients.py recipe=R refine.segmenter=SEG.pt refine.generator=IMAGE.pt \
        [batches=8] [data.* ...] [refine.lambda_content=0.1 refine.lambda_adv=0.1 refine.batch_size=8]

On `batches` training batches (read as refinement reads them: full samples, augmented), each term of
`refinement_losses` (cross-entropy l_S, content l_C, adversarial l_A) is differentiated alone with
respect to the segmenter's weights, weighted as refinement weighs it. Printed per term: its mean
value, the norm of its weighted gradient, that norm as a share of the cross-entropy's, and the
cosine between its gradient and the cross-entropy's (mean over batches). A term whose gradient is a
small share of the cross-entropy's cannot move the segmenter far from where cross-entropy alone
takes it in the same steps. Nothing is written; the weights are not changed.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from synthdata.core.contract import ConfigError  # noqa: E402
from synthdata.core.entry import run_main  # noqa: E402
from synthdata.core.recipe_loading import parse_command_line  # noqa: E402
from synthdata.core.runtime import make_accelerator  # noqa: E402
from synthdata.core.seeding import derive_seed, torch_generator  # noqa: E402
from synthdata.data.loader import Source, make_loader  # noqa: E402
from synthdata.data.readers.base import make_reader  # noqa: E402
from synthdata.models.segmenters import load_segmenter  # noqa: E402
from synthdata.segmentation.seggan import (  # noqa: E402
    REFINE_SEED_KEY,
    check_generator_size,
    load_image_stage,
    refinement_losses,
)

ARGUMENTS = {"batches": 8}
TERMS = ("ce", "content", "adv")


def term_gradients(model, G, D, batch, *, z, ignore_index: int, weights: dict[str, float]) -> dict[str, dict]:
    """Per term: its value, and its weighted gradient over the segmenter's weights as one vector."""
    params = [p for p in model.parameters() if p.requires_grad]
    terms = refinement_losses(model(batch["image"]), batch["image"], batch["layout"], generator=G,
                              discriminator=D, z=z, ignore_index=ignore_index, lambda_content=1.0, lambda_adv=1.0)
    out = {}
    for i, name in enumerate(TERMS):
        grads = torch.autograd.grad(weights[name] * terms[name], params, retain_graph=i < len(TERMS) - 1,
                                    allow_unused=True)
        vector = torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)])
        out[name] = {"value": float(terms[name].detach()), "grad": vector.double()}  # cosines of 1e7 numbers
    return out


def main(argv: list[str]) -> int:
    recipe, args = parse_command_line(argv, ARGUMENTS)
    cfg = recipe.refine
    if not cfg.segmenter or not cfg.generator:
        raise ConfigError("seggan_gradients: name the segmenter and the image stage: refine.segmenter=CKPT "
                          "refine.generator=CKPT")
    batches = int(args["batches"]) if str(args["batches"]).isdigit() else 0
    if batches < 1:
        raise ConfigError(f"seggan_gradients: batches must be a whole number >= 1, got {args['batches']!r}")
    accelerator = make_accelerator(mixed_precision="no")
    device = accelerator.device
    reader = make_reader(recipe.data, recipe.data.train_split)
    classes = reader.classes
    G, D, spec = load_image_stage(Path(cfg.generator), classes, recipe_name=recipe.name,
                                  run_dir=Path(cfg.generator).parent, device=device)
    check_generator_size(spec, recipe, Path(cfg.generator))
    model, _ = load_segmenter(Path(cfg.segmenter), expected=classes, device=device)
    model.train()  # as refinement runs it (batch statistics); nothing is stepped
    weights = {"ce": 1.0, "content": cfg.lambda_content, "adv": cfg.lambda_adv}
    loader = make_loader(Source(reader=reader), batch_size=cfg.batch_size, augment=True, shuffle=True,
                         epoch_length=batches * cfg.batch_size, seed=derive_seed(recipe.seed, REFINE_SEED_KEY, 0))
    rows = {name: {"value": 0.0, "norm": 0.0, "share": 0.0, "cosine": 0.0} for name in TERMS}
    seen = 0
    for k, batch in enumerate(loader):
        if seen == batches:
            break
        batch = {key: batch[key].to(device) for key in ("image", "layout")}
        z = None
        if spec.z_dim:
            z = torch.randn(batch["image"].shape[0], spec.z_dim,
                            generator=torch_generator(recipe.seed, REFINE_SEED_KEY, k)).to(device)
        terms = term_gradients(model, G, D, batch, z=z, ignore_index=classes.ignore_index, weights=weights)
        ce = terms["ce"]["grad"]
        for name in TERMS:
            grad = terms[name]["grad"]
            rows[name]["value"] += terms[name]["value"]
            rows[name]["norm"] += float(grad.norm())
            rows[name]["share"] += float(grad.norm() / ce.norm().clamp(min=1e-12))
            rows[name]["cosine"] += float(torch.nn.functional.cosine_similarity(grad, ce, dim=0))
        seen += 1
    print(f"SegGAN terms on {cfg.segmenter} through {cfg.generator}: {seen} batches of {cfg.batch_size} "
          f"({recipe.data.height}x{recipe.data.width}), weights content {cfg.lambda_content:g}, adversarial "
          f"{cfg.lambda_adv:g}; means over batches")
    print("| term | value | weighted gradient norm | norm / cross-entropy's | cosine with cross-entropy's |")
    print("| --- | --- | --- | --- | --- |")
    for name, label in zip(TERMS, ("cross-entropy", "content", "adversarial")):
        row = {key: value / seen for key, value in rows[name].items()}
        print(f"| {label} | {row['value']:.4f} | {row['norm']:.4g} | {row['share']:.3f} | {row['cosine']:+.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
