#!/usr/bin/env bash
# The GPU runs, as one script under one time budget: real size (issue 22: benchmarks/real_size.py
# does each run) and overlapped encoding on the GPU (issue 19: benchmarks/encode_overlap.py).
#
# On the device machine, from the repository root with the venv built:
#   bash benchmarks/real_size_device.sh                 # every run below, in this order
#   bash benchmarks/real_size_device.sh lora81 14b      # only the runs named
#   MODEL=tiny SIZE=17x64x64 SHORT=9x64x64 DEVICE=cpu BACKENDS=_native_math ENCODE_JOBS=2 \
#     BUDGET=900 bash benchmarks/real_size_device.sh   # the CPU rehearsal
# Where the machine has no venv (a bare image with PyTorch): PY=python3 WHEELS=<folder> installs
# the wheels of the project's other dependencies found there (`pip download --no-deps` of what
# the image lacks, and an ffmpeg) into /tmp/site, on PYTHONPATH and PATH.
#
# Output, in $OUT (or .): real_size_device.log (each run's last lines, its exit status and the
# clock) and <run>.log (a run's whole output, for what failed). A run that fails or runs out of
# time does not stop the others; no run starts with under 30 s of BUDGET left, and each is cut
# at the budget (the device is lent for 15 minutes, start-up included).
#
# Order: what issue 22's goals read first (1.3B LoRA at 81x480x832 with PyTorch's SDPA: the
# trainer against the bare loop, MFU), then the other size, each attention kernel, full
# fine-tuning, the 14B (its bf16 base is 28 GB to write and read), compile, the encoding overlap
# and the memory switches at real size. Each real-size run is the worker and the bare loop, 4 steps
# (3 timed); the 1.3B base (5 GB) is written by the first and reused.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUTDIR=${OUT:-.}
LOG=$OUTDIR/real_size_device.log
BUDGET=${BUDGET:-560}
MODEL=${MODEL:-1.3b}
DEVICE=${DEVICE:-cuda}
SIZE=${SIZE:-81x480x832}
SHORT=${SHORT:-33x480x832}
if [ -n "${WHEELS:-}" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    "$WHEELS"/*.whl || exit 3
  chmod +x /tmp/site/bin/* # pip --target may drop the executable bit of a wheel's ffmpeg
  export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH
  "$PY" -c "import dagster_project.cli.worker, benchmarks.encode_overlap" || exit 4
fi
read -r -a KERNELS <<<"${BACKENDS:-_native_flash _native_cudnn}"

# one run: its name, its own time cap (seconds), the command
run() {
  local name=$1 cap=$2 left=$((BUDGET - SECONDS))
  shift 2
  if [ "$left" -lt 30 ]; then
    echo "== $name: not started, the budget is spent (${SECONDS} s)" | tee -a "$LOG"
    return
  fi
  [ "$cap" -gt "$left" ] && cap=$left
  echo "== $name (at ${SECONDS} s, at most ${cap} s): $*" | tee -a "$LOG"
  local started
  started=$(mktemp)
  timeout "$cap" "$@" >"$OUTDIR/$name.log" 2>&1
  local status=$?
  # a failed worker's traceback (train.output_dir's failure.txt) goes into the run's log
  find benchmarks/.data/real_size -name failure.txt -newer "$started" 2>/dev/null |
    xargs -r tail -n 40 >>"$OUTDIR/$name.log" 2>&1
  rm -f "$started"
  grep -v Warning "$OUTDIR/$name.log" | tail -n 14 | tee -a "$LOG"
  echo "-- $name: exit $status at ${SECONDS} s" | tee -a "$LOG"
}
real_size=("$PY" -m benchmarks.real_size --device "$DEVICE")

all=(lora81 lora33 "${KERNELS[@]}" full33 14b compile encode switches)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=("${all[@]}")
for name in "${names[@]}"; do
  case $name in
    lora81) run lora81 150 "${real_size[@]}" --model "$MODEL" --size "$SIZE" --rows none ;;
    lora33) run lora33 90 "${real_size[@]}" --model "$MODEL" --size "$SHORT" --rows none ;;
    _native_*) run "$name" 90 "${real_size[@]}" --model "$MODEL" --size "$SIZE" --rows none \
      --attention-backend "$name" ;;
    full33) run full33 100 "${real_size[@]}" --model "$MODEL" --size "$SHORT" --rows none --mode full ;;
    # decoding (ffmpeg, every core) overlapped with the VAE on the GPU
    encode) run encode 150 "$PY" -m benchmarks.encode_overlap --jobs "${ENCODE_JOBS:-100}" ;;
    compile) run compile 180 "${real_size[@]}" --model "$MODEL" --size "$SIZE" --rows none --compile ;;
    # fp8 storage and checkpointing: a 14B LoRA on one GPU without offload
    14b) run 14b 300 "${real_size[@]}" --model "${MODEL_14B:-14b}" --size "$SHORT" \
      --rows gradient_checkpointing+layerwise_casting ;;
    switches) run switches 240 "${real_size[@]}" --model "$MODEL" --size "$SIZE" \
      --rows gradient_checkpointing,layerwise_casting,group_offload ;;
    *) echo "unknown run: $name (known: ${all[*]})" >&2 && exit 2 ;;
  esac
done
nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null | tee -a "$LOG"
echo "done at ${SECONDS} s: $LOG"
