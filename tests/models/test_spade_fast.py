"""The SPADE generator's fast paths against the plain formulas, and tools/bench_generator.py.

Tolerances, on outputs in [-1, 1] (std ~0.2 here): fp32 paths within 1e-5 of each other and of
the float64 result (each is ~1-3e-6 off it, as the plain formula in fp32 is); bf16 autocast paths
within 0.06 of the float64 result (the plain formula under bf16 is 0.02-0.04 off it: bf16 keeps
8 significant bits and the paths round in different places).
"""

from __future__ import annotations

import copy
import runpy
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from synthdata.models.spade import SPADE, SPADEGenerator, SPADEResBlock, instance_norm

C = 4
H, W = 32, 64
TOOL = Path(__file__).resolve().parents[2] / "tools" / "bench_generator.py"
FP32 = {"atol": 1e-5, "rtol": 1e-5}
BF16 = {"atol": 6e-2, "rtol": 0.0}


def generator(cond_channels: int = C + 1, out_channels: int = 3, z_dim: int = 8, ngf: int = 4) -> SPADEGenerator:
    torch.manual_seed(0)
    gen = SPADEGenerator(cond_channels=cond_channels, out_channels=out_channels, height=H, width=W,
                         ngf=ngf, z_dim=z_dim, hidden=8)
    with torch.no_grad():  # non-trivial gamma/beta/shortcut weights (init gives N(0, 0.02))
        for p in gen.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return gen


def inputs(cond_channels: int = C + 1, z_dim: int = 8, b: int = 2):
    gen = torch.Generator().manual_seed(1)
    labels = torch.randint(0, C, (b, H, W), generator=gen)
    cond = torch.cat([F.one_hot(labels, C).permute(0, 3, 1, 2).float(), torch.rand(b, 1, H, W, generator=gen)], 1)
    return cond[:, :cond_channels], (torch.randn(b, z_dim, generator=gen) if z_dim else None)


# The generator as first written: every SPADE layer resizes the full-resolution map, instance
# norm, then norm * (1 + gamma) + beta; weights read from the module (spectral norm included).
def plain_spade(m: SPADE, x, cond):
    cond = F.interpolate(cond, size=x.shape[2:], mode="nearest")
    h = m.shared(cond)
    return F.instance_norm(x) * (1 + m.gamma(h)) + m.beta(h)


def plain_block(m: SPADEResBlock, x, cond):
    skip = x if m.shortcut is None else m.shortcut(plain_spade(m.norm_s, x, cond))
    dx = m.conv_0(F.leaky_relu(plain_spade(m.norm_0, x, cond), 0.2))
    dx = m.conv_1(F.leaky_relu(plain_spade(m.norm_1, dx, cond), 0.2))
    return skip + dx


def plain_forward(g: SPADEGenerator, cond, z):
    b = cond.shape[0]
    if g.z_dim > 0:
        x = g.fc(z).view(b, -1, g.base_h, g.base_w)
    else:
        x = g.fc(F.interpolate(cond, size=(g.base_h, g.base_w), mode="nearest"))
    x = plain_block(g.middle, plain_block(g.head, x, cond), cond)
    for block in g.ups:
        x = plain_block(block, F.interpolate(x, scale_factor=2, mode="nearest"), cond)
    return torch.tanh(g.to_out(F.leaky_relu(x, 0.2)))


@pytest.mark.parametrize("cond_channels,out_channels,z_dim", [(C + 1, 3, 8), (C, 1, 8), (C + 1, 3, 0)])
def test_eval_and_folded_paths_match_the_plain_formulas(cond_channels, out_channels, z_dim):
    gen = generator(cond_channels, out_channels, z_dim).eval()
    cond, z = inputs(cond_channels, z_dim)
    with torch.no_grad():
        expected = plain_forward(gen, cond, z)
        exact = plain_forward(copy.deepcopy(gen).double(), cond.double(), None if z is None else z.double())
        torch.testing.assert_close(expected.double(), exact, **FP32)
        torch.testing.assert_close(gen.fold_for_inference()(cond, z).double(), exact, **FP32)
        torch.testing.assert_close(gen(cond, z), expected, **FP32)
        torch.testing.assert_close(gen(cond.contiguous(memory_format=torch.channels_last), z), expected, **FP32)
        for channels_last in (False, True):
            torch.testing.assert_close(gen.fold_for_inference(channels_last)(cond, z), expected, **FP32)
    with torch.inference_mode():  # as the sampler calls it
        fast = gen.fold_for_inference()
        torch.testing.assert_close(fast(cond, z), expected, **FP32)


def test_folding_leaves_the_trained_module_and_its_checkpoint_keys_alone():
    gen = generator().train()
    keys = list(gen.state_dict())
    # checkpoints of the plain module keep these names (state dicts saved before the fast path load)
    assert "head.norm_0.gamma.weight" in keys and "head.norm_0.beta.bias" in keys
    assert "head.norm_0.shared.0.weight" in keys and "ups.0.norm_s.gamma.weight" in keys
    assert {"head.conv_0.parametrizations.weight.original", "head.conv_0.parametrizations.weight.0._u",
            "ups.0.shortcut.parametrizations.weight.0._v"} <= set(keys)
    fast = gen.fold_for_inference()
    assert gen.training and not fast.training
    assert list(gen.state_dict()) == keys
    assert not any("parametrizations" in k for k in fast.state_dict())
    assert not any(p.requires_grad for p in fast.parameters())
    assert fast.channels_last and not gen.channels_last
    gen.load_state_dict(copy.deepcopy(gen.state_dict()))  # still loads
    cond, z = inputs()
    gen(cond, z).sum().backward()  # and still trains, spectral norm included
    assert all(p.grad is not None for p in gen.parameters())


def test_training_step_matches_the_plain_formulas_in_values_and_gradients():
    gen = generator().train()
    twin = copy.deepcopy(gen)  # same weights and power-iteration vectors
    cond, z = inputs()
    out, expected = gen(cond, z), plain_forward(twin, cond, z)
    torch.testing.assert_close(out, expected, **FP32)
    out.square().mean().backward()
    expected.square().mean().backward()
    for (name, p), q in zip(gen.named_parameters(), twin.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-6, rtol=1e-4, msg=name)
    for b, c in zip(gen.buffers(), twin.buffers()):  # the power iteration ran the same way
        torch.testing.assert_close(b, c)


def test_bf16_autocast_fast_path_stays_close():
    gen = generator().eval()
    cond, z = inputs()
    with torch.no_grad():
        expected = plain_forward(copy.deepcopy(gen).double(), cond.double(), z.double()).float()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            plain = gen(cond, z)
            fast = gen.fold_for_inference()(cond, z)
            fast_bf16 = gen.fold_for_inference().to(torch.bfloat16)(cond, z)
    for out in (plain, fast, fast_bf16):
        assert out.dtype == torch.bfloat16
        torch.testing.assert_close(out.float(), expected, **BF16)
    torch.testing.assert_close(fast_bf16.float(), fast.float(), **BF16)


@pytest.mark.parametrize("shape", [(2, 6, 8, 16), (1, 16, 2, 2), (2, 1, 4, 4)])
def test_channels_last_instance_norm_is_instance_norm(shape):
    x = 3 * torch.randn(shape) + 1
    torch.testing.assert_close(instance_norm(x.contiguous(memory_format=torch.channels_last)),
                               F.instance_norm(x), **FP32)
    torch.testing.assert_close(instance_norm(x), F.instance_norm(x))


def test_spade_layers_accept_a_map_of_any_size():
    # shapes are what this checks: seeded, and a tolerance for instance norm over 8x16 maps, where
    # a channel of nearly equal values divides rounding error by a small std (1e-5 failed once)
    torch.manual_seed(0)
    norm, block = SPADE(6, C, hidden=8), SPADEResBlock(6, 3, C, hidden=8)
    x = torch.randn(2, 6, 8, 16)
    cond, _ = inputs(C)
    with torch.no_grad():
        torch.testing.assert_close(norm(x, cond), plain_spade(norm, x, cond), rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(block(x, cond), plain_block(block, x, cond), rtol=1e-3, atol=1e-3)


# ---------------------------------------------------------------------------------------------
# tools/bench_generator.py at tiny sizes (it must keep running; no timing is checked)

# --default-malloc: the tool would otherwise set the allocator of the test process for the rest of it
TINY = ["--sizes", "32x64", "--ngf", "4", "--batch", "1", "--rounds", "1", "--cond-channels", "5",
        "--peak-size", "64", "--default-malloc"]


def run_tool(monkeypatch, args: list[str]) -> None:
    monkeypatch.setattr(sys, "argv", [str(TOOL), *args])
    monkeypatch.setattr(sys, "path", list(sys.path))  # the tool prepends to it
    runpy.run_path(str(TOOL), run_name="__main__")


def test_bench_generator_prints_fast_plain_and_training_rows(monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_tool(monkeypatch, [*TINY, "--plain", "--precisions", "fp32,bf16"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "matmul peak, 64^3: fp32" in out
    for run in ("fast", "plain"):
        assert f"| 32x64 | fp32 | {run} (" in out, out
    assert "| 32x64 | bf16 |" in out  # timed, or skipped with the reason on CPUs without bf16
    with pytest.raises(SystemExit):
        run_tool(monkeypatch, [*TINY, "--train", "--precisions", "fp32"])
    assert "| 32x64 | fp32 | train step (" in capsys.readouterr().out
    if not torch.cuda.is_available():  # --device cuda: a usage error naming the option, not a traceback
        with pytest.raises(SystemExit) as exit_:
            run_tool(monkeypatch, [*TINY, "--device", "cuda"])
        assert exit_.value.code == 2 and "--device cuda: no CUDA device" in capsys.readouterr().err


def test_bench_generator_profile_prints_page_faults_and_an_op_table(monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_tool(monkeypatch, [*TINY, "--precisions", "fp32", "--profile"])
    assert exit_.value.code == 0
    captured = capsys.readouterr()
    assert "allocator: glibc defaults" in captured.out
    assert "fast, fp32: one step: user " in captured.err and "minor page faults" in captured.err
    assert "aten::" in captured.err  # the profiler's op table


FAKE_REFERENCE = '''
import torch
from torch import nn
from models.networks.base_network import BaseNetwork
from models.networks.sync_batchnorm import SynchronizedBatchNorm2d


class SPADEGenerator(BaseNetwork):
    def __init__(self, opt):
        super().__init__()
        self.conv = nn.Conv2d(opt.semantic_nc, 3, 3, padding=1)
        self.norm = SynchronizedBatchNorm2d(3)

    def forward(self, seg, z=None):
        return torch.tanh(self.norm(self.conv(seg)))
'''


def test_bench_generator_reference_from_a_checkout(monkeypatch, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        run_tool(monkeypatch, [*TINY, "--reference", str(tmp_path / "missing")])
    assert exit_.value.code == 2
    assert "no NVlabs/SPADE checkout there" in capsys.readouterr().err
    # a stand-in with the checkout's layout; __init__ files that must not run, no sync_batchnorm
    networks = tmp_path / "SPADE" / "models" / "networks"
    networks.mkdir(parents=True)
    (networks.parent / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    (networks / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    (networks / "base_network.py").write_text("from torch import nn\nBaseNetwork = nn.Module\n")
    (networks / "generator.py").write_text(FAKE_REFERENCE)
    for name in ("models", "models.networks", "models.networks.sync_batchnorm",
                 "models.networks.base_network", "models.networks.generator"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    try:
        with pytest.raises(SystemExit) as exit_:
            run_tool(monkeypatch, [*TINY, "--precisions", "fp32", "--reference", str(tmp_path / "SPADE")])
    finally:
        for name in list(sys.modules):  # leave no stand-in behind for other tests
            if name == "models" or name.startswith("models."):
                del sys.modules[name]
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "| 32x64 | fp32 | reference (" in out and "| 1.00x |" in out, out


def test_features_are_channels_last_only_in_the_folded_copy():
    """A one-hot cond arrives channels_last; training must not follow it (under bf16 autocast the
    channels_last norm's backward made steps ~25% slower), the folded copy must (faster forward)."""
    gen = generator()
    cond, z = inputs()
    cond = cond.contiguous(memory_format=torch.channels_last)
    seen: dict[str, list[bool]] = {"train": [], "fast": []}
    for name, module in (("train", gen), ("fast", gen.fold_for_inference(channels_last=True))):
        hook = module.head.conv_0.register_forward_pre_hook(
            lambda m, args, name=name: seen[name].append(args[0].is_contiguous()))
        module(cond, z)
        hook.remove()
    assert seen == {"train": [True], "fast": [False]}
