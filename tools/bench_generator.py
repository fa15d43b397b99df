"""Image-generator forward speed: img/s, CPU time per image and achieved TFLOP/s next to the
machine's measured matmul peak, fp32 and bf16 autocast, optionally beside NVlabs/SPADE.

    python tools/bench_generator.py [--sizes 128x256,256x512] [--batch 4] [--precisions fp32,bf16]
        [--ngf 64] [--cond-channels 36] [--rounds 3] [--plain] [--reference PATH] [--train]
        [--device cpu|cuda] [--profile] [--default-malloc]

Runs (interleaved, one forward of each per round, best of `--rounds`): `fast` (the sampling
path, `SPADEGenerator.fold_for_inference()`), with `--plain` also `plain` (the eval-mode module
as trained: spectral norm recomputed at every call), with `--reference PATH` the SPADE generator
of a checkout of https://github.com/NVlabs/SPADE at the same size, ngf and conditioning channels
(its Cityscapes settings: batch-norm SPADE, no VAE), imported from PATH at run time.
`--train` times a generator training step (forward + backward, train mode) instead.
`--device cuda` runs everything (the matmul peak too) on the GPU, timed with synchronisation;
there "of peak" is wall-clock FLOP/s over the GPU's measured matmul rate.
FLOPs come from torch.utils.flop_counter (a multiply-add counts 2); CPU s/img is the process's
user + sys time, so it stays meaningful when other processes compete for the cores, and so does
"of peak": FLOP per CPU second of the run over that of the matmul (TFLOP/s is per wall second).
"""

from __future__ import annotations

import argparse
import copy
import os
import resource
import sys
import time
from argparse import Namespace
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.utils import parametrize  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from synthdata.core.runtime import benchmark_allocator, cpu_model  # noqa: E402
from synthdata.models.spade import SPADEGenerator  # noqa: E402
from tools.spade_reference import load_generator  # noqa: E402


def parse_args(argv: list[str]) -> Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="128x256,256x512", help="comma-separated HxW")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--precisions", default="fp32,bf16", help="fp32, bf16 (autocast) or both")
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--cond-channels", type=int, default=36)
    p.add_argument("--hidden", type=int, default=None, help="SPADE hidden channels (default min(128, 2 ngf))")
    p.add_argument("--z-dim", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best one counts")
    p.add_argument("--plain", action="store_true", help="also time the unfolded eval-mode module")
    p.add_argument("--reference", metavar="PATH", help="a checkout of NVlabs/SPADE to time side by side")
    p.add_argument("--channels-last", action="store_true",
                   help="plain and reference runs in channels_last too (fast is so on CPU already)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the fast path (inductor, frozen weights); prints the compile time")
    p.add_argument("--train", action="store_true", help="time training steps (forward + backward)")
    p.add_argument("--force-bf16", action="store_true",
                   help="time bf16 even where the CPU has no native bf16 (it is then ~100x slower)")
    p.add_argument("--peak-size", type=int, default=2048, help="matmul size for the peak (N^3)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--profile", action="store_true",
                   help="after the timing, one more step of each run under torch.profiler: its op table and "
                        "the step's system CPU time and page faults (getrusage)")
    p.add_argument("--default-malloc", action="store_true",
                   help="leave glibc's allocator at its defaults (the commands set it with "
                        "synthdata.core.runtime.configure_allocator, and so does this tool otherwise)")
    args = p.parse_args(argv)
    args.sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",") if s]
    args.precisions = [s for s in args.precisions.split(",") if s]
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device visible to torch here")
    if bad := [s for s in args.precisions if s not in ("fp32", "bf16")]:
        p.error(f"unknown precision {bad}; valid: fp32, bf16")
    return args


def native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively here (AVX-512 BF16 / AMX); without it bf16 convs fall
    back to a slow reference path on CPU."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def matmul_peak(n: int, dtype: torch.dtype, rounds: int = 3, device: str = "cpu") -> tuple[float, float]:
    """(FLOP per wall second, FLOP per CPU second) of an n x n x n matmul, best of `rounds`; on a
    GPU both are per wall second (its CPU time is the launching thread's, not the work's)."""
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    # cuDNN runs fp32 convolutions in TF32 by default: the fp32 peak they are held to is TF32's too
    torch.backends.cuda.matmul.allow_tf32 = device == "cuda" and torch.backends.cudnn.allow_tf32
    a @ b
    sync(device)
    wall = cpu = float("inf")
    for _ in range(rounds):
        w0, c0 = time.perf_counter(), time.process_time()
        a @ b
        sync(device)
        wall, cpu = min(wall, time.perf_counter() - w0), min(cpu, time.process_time() - c0)
    torch.backends.cuda.matmul.allow_tf32 = tf32
    return (2 * n**3 / wall, 2 * n**3 / wall) if device == "cuda" else (2 * n**3 / wall, 2 * n**3 / cpu)


def build_reference(cls: type, args: Namespace, height: int, width: int) -> nn.Module:
    opt = Namespace(ngf=args.ngf, semantic_nc=args.cond_channels, use_vae=False, z_dim=256,
                    num_upsampling_layers="normal", crop_size=width, aspect_ratio=width / height,
                    norm_G="spectralspadesyncbatch3x3")
    return cls(opt)


# ---------------------------------------------------------------------------------------------


def build_ours(args: Namespace, height: int, width: int) -> SPADEGenerator:
    hidden = args.hidden or min(128, 2 * args.ngf)
    return SPADEGenerator(cond_channels=args.cond_channels, out_channels=3, height=height, width=width,
                          ngf=args.ngf, z_dim=args.z_dim, hidden=hidden)


def strip_spectral_norm(module: nn.Module) -> nn.Module:
    """`module` (a copy) with plain weights where spectral norm was, for counting FLOPs only (the
    values are the unnormalised ones). Works on the parametrisation and on the reference's hooks;
    only the copy's class pointer changes (a deep copy shares its parametrised class with the
    original, which `parametrize.remove_parametrizations` would edit)."""
    for m in list(module.modules()):
        if parametrize.is_parametrized(m):
            originals = {name: p.original for name, p in m.parametrizations.items()}
            del m._modules["parametrizations"]
            m.__class__ = m.__class__.__bases__[0]
            for name, value in originals.items():
                m.register_parameter(name, nn.Parameter(value.detach(), requires_grad=value.requires_grad))
        if any(type(h).__name__ == "SpectralNorm" for h in m._forward_pre_hooks.values()):
            nn.utils.remove_spectral_norm(m)
    return module


def count_flops(module: nn.Module, fn: Callable, args: Namespace, height: int, width: int) -> int:
    """FLOPs of one image's forward (with `--train`: forward + backward), counted on a copy of
    `module` on the meta device (no computation), or on the CPU where meta is not supported.
    Spectral norm is stripped from the copy first (it fails on meta; its matrix-vector products
    are not counted anyway)."""
    for device in ("meta", "cpu"):
        try:
            m = strip_spectral_norm(copy.deepcopy(getattr(module, "_orig_mod", module))).to(device)
            cond, z = inputs(args, 1, height, width, device)
            counter = FlopCounterMode(display=False)
            with counter:
                if args.train:
                    fn(m, cond, z).float().square().mean().backward()
                else:
                    with torch.no_grad():
                        fn(m, cond, z)
            return counter.get_total_flops()
        except Exception:
            if device == "cpu":
                raise
    raise AssertionError("unreachable")


def inputs(args: Namespace, batch: int, height: int, width: int, device: str = "cpu"):
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, args.cond_channels - 1, (batch, height, width), generator=gen)
    cond = torch.cat([nn.functional.one_hot(labels, args.cond_channels - 1).permute(0, 3, 1, 2).float(),
                      torch.rand(batch, 1, height, width, generator=gen)], 1).to(device)
    z = torch.randn(batch, args.z_dim, generator=gen).to(device)
    if args.channels_last:
        cond = cond.contiguous(memory_format=torch.channels_last)
    return cond, z


def make_runs(args: Namespace, height: int, width: int, reference: type | None) -> dict[str, tuple[nn.Module, Callable]]:
    """name -> (module, forward(cond, z))."""
    torch.manual_seed(0)
    ours = build_ours(args, height, width).to(args.device)
    runs: dict[str, tuple[nn.Module, Callable]] = {}
    if args.train:
        runs["train step"] = (ours.train(), lambda m, c, z: m(c, z))
    else:
        ours.eval().requires_grad_(False)
        fold = getattr(ours, "fold_for_inference", None)
        if fold is not None:
            fast = fold()
            if args.compile:
                from torch._inductor import config as inductor_config

                inductor_config.freezing = True  # constant weights: oneDNN prepacks them
                fast = torch.compile(fast)
            runs["fast"] = (fast, lambda m, c, z: m(c, z))
        if args.plain or fold is None:  # a checkout before the fast path has the plain one only
            runs["plain"] = (ours, lambda m, c, z: m(c, z))
    if reference is not None:
        ref = build_reference(reference, args, height, width).to(args.device)
        ref.train() if args.train else ref.eval().requires_grad_(False)
        runs["reference"] = (ref, lambda m, c, z: m(c))
    if args.channels_last:
        for name, (module, _) in runs.items():
            if name != "fast":
                module.to(memory_format=torch.channels_last)
    return runs


def step(module: nn.Module, fn: Callable, cond: torch.Tensor, z: torch.Tensor, precision: str, train: bool) -> None:
    autocast = torch.autocast(cond.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    if train:
        module.zero_grad(set_to_none=True)
        with autocast:
            out = fn(module, cond, z)
        out.float().square().mean().backward()
    else:
        with torch.inference_mode(), autocast:
            fn(module, cond, z)


def profile_step(name: str, module: nn.Module, fn: Callable, cond: torch.Tensor, z: torch.Tensor,
                 precision: str, args: Namespace) -> None:
    """One more step of a run: system CPU time and minor page faults around it, then its op table."""
    from torch.profiler import ProfilerActivity, profile

    before = resource.getrusage(resource.RUSAGE_SELF)
    step(module, fn, cond, z, precision, args.train)
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(f"{name}, {precision}: one step: user {after.ru_utime - before.ru_utime:.2f} s, system "
          f"{after.ru_stime - before.ru_stime:.2f} s, {after.ru_minflt - before.ru_minflt} minor page faults",
          file=sys.stderr)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(module, fn, cond, z, precision, args.train)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12), file=sys.stderr, flush=True)


def bench_size(args: Namespace, height: int, width: int, reference: type | None,
               peaks: dict[str, tuple[float, float]]) -> None:
    runs = make_runs(args, height, width, reference)
    params = {name: sum(p.numel() for p in m.parameters()) for name, (m, _) in runs.items()}
    flops = {name: count_flops(m, f, args, height, width) for name, (m, f) in runs.items()}
    cond, z = inputs(args, args.batch, height, width, args.device)
    for precision in args.precisions:
        if precision == "bf16" and args.device == "cpu" and not native_bf16() and not args.force_bf16:
            print(f"| {height}x{width} | bf16 | skipped: no native bf16 on this CPU (convolutions would "
                  "fall back to a path ~100x slower than fp32); --force-bf16 times it anyway | | | | | |")
            continue
        for name, (m, f) in runs.items():  # warm-up (oneDNN primitives, torch.compile)
            t = time.perf_counter()
            step(m, f, cond, z, precision, args.train)
            sync(args.device)
            if args.compile and name == "fast":
                print(f"fast, {height}x{width}, {precision}: first call with torch.compile took "
                      f"{time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
        wall = {name: float("inf") for name in runs}
        cpu = dict(wall)
        for _ in range(args.rounds):
            for name, (m, f) in runs.items():
                w0, c0 = time.perf_counter(), time.process_time()
                step(m, f, cond, z, precision, args.train)
                sync(args.device)
                wall[name] = min(wall[name], time.perf_counter() - w0)
                cpu[name] = min(cpu[name], time.process_time() - c0)
        if args.profile:
            for name, (m, f) in runs.items():
                profile_step(name, m, f, cond, z, precision, args)
        base = wall.get("reference")
        for name in runs:
            tflops = flops[name] * args.batch / wall[name] / 1e12
            # FLOP per CPU second of the run over that of the matmul: unlike wall-clock rates,
            # this share holds when other processes take turns on the cores
            per_second = wall[name] if args.device == "cuda" else cpu[name]
            share = f"{100 * flops[name] * args.batch / per_second / peaks[precision][1]:.0f}%"
            vs = f"{base / wall[name]:.2f}x" if base else "-"
            print(f"| {height}x{width} | {precision} | {name} ({params[name] / 1e6:.1f}M) | "
                  f"{args.batch / wall[name]:.3g} | {cpu[name] / args.batch:.3g} | {flops[name] / 1e9:.4g} | "
                  f"{tflops:.3g} | {share} | {vs} |", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    reference = load_generator(args.reference) if args.reference else None
    threads = torch.get_num_threads()
    allocator = benchmark_allocator(keep_defaults=args.default_malloc)
    print(f"{cpu_model()}, torch {torch.__version__}, {threads} threads "
          f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), native bf16: {native_bf16()}, "
          f"{allocator}")
    if args.device == "cuda":
        print(f"device: {torch.cuda.get_device_name()}; cuDNN TF32: {torch.backends.cudnn.allow_tf32} (fp32 "
              "convolutions, and the fp32 matmul peak they are compared with, in TF32 when true)")
    peaks = {"fp32": matmul_peak(args.peak_size, torch.float32, device=args.device)}
    print(f"matmul peak, {args.peak_size}^3: fp32 {peaks['fp32'][0] / 1e12:.3g} TFLOP/s "
          f"({peaks['fp32'][1] / 1e12:.3g} per CPU second)", end="")
    if "bf16" in args.precisions:
        n = args.peak_size if native_bf16() or args.device == "cuda" else min(args.peak_size, 512)
        peaks["bf16"] = matmul_peak(n, torch.bfloat16, device=args.device)
        note = "" if n == args.peak_size else f"; at {n}^3: no native bf16, {args.peak_size}^3 would take minutes"
        print(f", bf16 {peaks['bf16'][0] / 1e12:.3g} TFLOP/s ({peaks['bf16'][1] / 1e12:.3g} per CPU second{note})",
              end="")
    print()
    what = "training step (forward + backward)" if args.train else "forward"
    print(f"{what}, batch {args.batch}, ngf {args.ngf}, {args.cond_channels} conditioning channels, "
          f"best of {args.rounds} interleaved rounds{', channels_last' if args.channels_last else ''}")
    print("| size | precision | run (params) | img/s | CPU s/img | GFLOP/img | TFLOP/s | of peak (CPU time) | vs reference |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for height, width in args.sizes:
        bench_size(args, height, width, reference, peaks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
