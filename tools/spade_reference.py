"""NVlabs/SPADE (https://github.com/NVlabs/SPADE) imported from a checkout given by path, for the
benchmarks that time our networks beside it (tools/bench_generator.py, tools/bench_stage_step.py).
Nothing of it is copied here; it is imported at run time from PATH.

Its package __init__ files import the whole training code and `dill`, so the packages are made
by hand; `sync_batchnorm` is a git submodule that is often absent, and in one process it is plain
batch norm (and one-device DataParallel); `dill` only pickles options files, which the
benchmarks never write, so the standard pickle stands in for it.
"""

from __future__ import annotations

import pickle
import sys
import types
from argparse import Namespace
from pathlib import Path

from torch import nn


def _checkout(path: str) -> Path:
    root = Path(path).expanduser().resolve()
    if not (root / "models" / "networks" / "generator.py").is_file():
        print(f"--reference {path}: no NVlabs/SPADE checkout there (expected "
              f"{root / 'models/networks/generator.py'}); get one with "
              "`git clone https://github.com/NVlabs/SPADE`", file=sys.stderr)
        raise SystemExit(2)
    return root


def _install(root: Path) -> None:
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    for name in ("models", "models.networks"):
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [str(root.joinpath(*name.split(".")))]
            sys.modules[name] = package
    if not (root / "models" / "networks" / "sync_batchnorm" / "__init__.py").is_file():
        stub = types.ModuleType("models.networks.sync_batchnorm")
        stub.SynchronizedBatchNorm2d = nn.BatchNorm2d
        stub.DataParallelWithCallback = nn.DataParallel
        sys.modules[stub.__name__] = stub
    sys.modules.setdefault("dill", pickle)


def load_generator(path: str) -> type:
    """The reference's `SPADEGenerator` class."""
    _install(_checkout(path))
    from models.networks.generator import SPADEGenerator as Reference  # type: ignore

    return Reference


def load_trainer(path: str) -> type:
    """The reference's `Pix2PixTrainer` class (generator and discriminator updates, its losses)."""
    _install(_checkout(path))
    networks = types.ModuleType("models.networks")  # the real package body now: define_G etc.
    networks.__path__ = [str(_checkout(path) / "models" / "networks")]
    sys.modules["models.networks"] = networks
    exec(compile((Path(networks.__path__[0]) / "__init__.py").read_text(), "models/networks/__init__.py", "exec"),
         networks.__dict__)
    sys.modules["models"].networks = networks
    from trainers.pix2pix_trainer import Pix2PixTrainer  # type: ignore

    return Pix2PixTrainer


def trainer_options(*, label_nc: int, height: int, width: int, ngf: int, ndf: int, num_d: int, n_layers_d: int,
                    lr_g: float, lr_d: float, betas: tuple[float, float], cuda: bool) -> Namespace:
    """The reference trainer's options for SPADE at our image stage's settings: batch-norm SPADE,
    no VAE, no instance maps, hinge loss with feature matching (lambda 10), no VGG loss (ours has
    none), a multiscale spectral-instance-norm discriminator."""
    lr = (lr_g + lr_d) / 2  # TTUR: the reference trains G at lr/2 and D at 2 lr
    return Namespace(
        isTrain=True, continue_train=False, gpu_ids=[0] if cuda else [], checkpoints_dir="", name="bench",
        which_epoch="latest", label_nc=label_nc, contain_dontcare_label=False, no_instance=True,
        semantic_nc=label_nc, output_nc=3, crop_size=width, aspect_ratio=width / height,
        netG="spade", ngf=ngf, norm_G="spectralspadesyncbatch3x3", num_upsampling_layers="normal",
        use_vae=False, z_dim=256, norm_E="spectralinstance",
        netD="multiscale", netD_subarch="n_layer", num_D=num_d, n_layers_D=n_layers_d, ndf=ndf,
        norm_D="spectralinstance", gan_mode="hinge", no_ganFeat_loss=False, lambda_feat=10.0,
        no_vgg_loss=True, lambda_vgg=10.0, lambda_kld=0.05, init_type="xavier", init_variance=0.02,
        lr=lr, beta1=betas[0], beta2=betas[1], no_TTUR=lr_g == lr_d,
    )
