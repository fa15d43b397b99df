#!/bin/bash
# Issue 33's GPU checks in one short run, for a session that is lent a GPU (device `run`): the whole
# stage step beside its networks, the generator alone and NVlabs/SPADE's trainer (image), and beside a
# plain WGAN-GP loop (layout; also with the lazy penalty, gp_every=4), with profiles (torch.profiler, CUDA time) of the image and layout steps,
# and last the image step with the generator compiled (train.compile: default only where it wins on CPU and GPU).
#   bash tools/gpu_stage_step.sh SPADE_CHECKOUT OUT_DIR      (about 3 minutes on one H100/H200, plus compiling)
# SPADE_CHECKOUT: a clone of https://github.com/NVlabs/SPADE carried to the device (e.g. under runs/,
# which git ignores: `run` carries it with carry=["runs/SPADE"]); OUT_DIR: where the logs go ($OUT).
set -euo pipefail
spade=${1:?usage: bash tools/gpu_stage_step.sh SPADE_CHECKOUT OUT_DIR}
out=${2:?usage: bash tools/gpu_stage_step.sh SPADE_CHECKOUT OUT_DIR}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.txt" 2>&1 || true
python tools/bench_stage_step.py recipe=camvid steps=20 rounds=3 reference="$spade" profile=true \
    > "$out/image-192x256.txt" 2> "$out/image-192x256.profile.txt"
python tools/bench_stage_step.py recipe=camvid data.height=144 data.width=192 steps=20 rounds=3 \
    > "$out/image-144x192.txt" 2>&1
python tools/bench_stage_step.py stage=layout recipe=camvid data.height=144 data.width=192 steps=20 rounds=3 \
    profile=true > "$out/layout-144x192.txt" 2> "$out/layout-144x192.profile.txt"
python tools/bench_stage_step.py stage=layout recipe=camvid data.height=144 data.width=192 steps=20 rounds=3 \
    stages.layout.gp_every=4 > "$out/layout-144x192-gp4.txt" 2>&1
python tools/bench_stage_step.py recipe=camvid data.height=144 data.width=192 steps=20 rounds=3 compile=true \
    > "$out/image-144x192-compile.txt" 2>&1  # last: compiling takes a minute or more
cat "$out"/image-192x256.txt "$out"/image-144x192.txt "$out"/layout-144x192.txt "$out"/layout-144x192-gp4.txt \
    "$out"/image-144x192-compile.txt
