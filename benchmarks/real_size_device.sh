#!/usr/bin/env bash
# The GPU runs, as one script: overlapped encoding on the GPU (issue 19,
# benchmarks/encode_overlap.py), then real size (issue 22: benchmarks/real_size.py does each).
#
# On the device machine, from the repository root with the venv built:
#   bash benchmarks/real_size_device.sh            # bf16 on the GPU, the rows below
#   MODEL=tiny SIZE=17x64x64 SHORT=9x64x64 DEVICE=cpu BACKENDS=_native_math ENCODE_JOBS=2 \
#     bash benchmarks/real_size_device.sh                                   # the CPU rehearsal
# Where the machine has no venv (a bare image with PyTorch): PY=python3, the project's other
# dependencies installed as wheels (pip --target, on PYTHONPATH) and an ffmpeg on PATH.
# Output: $OUT/real_size_device.log (or ./real_size_device.log), one table per run.
#
# Budget: 10 minutes of device time. The 1.3B base (5 GB) is written once and reused by every
# run; each run is the worker and the bare loop, 4 steps (3 timed). Not yet run on a device:
# the times per run are estimates. WITH_14B=1 adds the 14B (LoRA with fp8 storage and gradient
# checkpointing; its bf16 base is 28 GB to write and read, so it comes last).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
LOG=${OUT:-.}/real_size_device.log
MODEL=${MODEL:-1.3b}
DEVICE=${DEVICE:-cuda}
SIZE=${SIZE:-81x480x832}
SHORT=${SHORT:-33x480x832}
run() { echo "== $*" | tee -a "$LOG"; timeout 600 "$PY" -m benchmarks.real_size --device "$DEVICE" "$@" 2>&1 | tail -8 | tee -a "$LOG"; }

nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null | tee -a "$LOG" || true
# decoding (ffmpeg, every core) overlapped with the VAE on the GPU: 100 jobs each way, ~2 min
echo "== encode_overlap" | tee -a "$LOG"
timeout 300 "$PY" -m benchmarks.encode_overlap --jobs "${ENCODE_JOBS:-100}" 2>&1 | tail -6 | tee -a "$LOG"
# LoRA at both sizes, SDPA (PyTorch chooses the kernel), then each kernel and compile at the long one
run --model "$MODEL" --size "$SIZE" --rows none
run --model "$MODEL" --size "$SHORT" --rows none
for backend in ${BACKENDS:-_native_cudnn _native_flash}; do
  run --model "$MODEL" --size "$SIZE" --rows none --attention-backend "$backend"
done
run --model "$MODEL" --size "$SIZE" --rows none --compile
# full fine-tuning, and the memory switches at real size
run --model "$MODEL" --size "$SHORT" --rows none --mode full
run --model "$MODEL" --size "$SIZE" --rows gradient_checkpointing,layerwise_casting,group_offload
# the 14B last (its base is 28 GB to write and read): only where time is left
if [ "${WITH_14B:-0}" = 1 ]; then
  run --model 14b --size "$SHORT" --rows gradient_checkpointing+layerwise_casting
fi
echo "done: $LOG"
