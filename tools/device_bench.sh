#!/usr/bin/env bash
# Measures repux against PyTorch on the CPU of a lent machine (the `device` tool), in one run:
# both pinned to the same 2 cores (`taskset -c 0,1`, the project machine's core count), then on
# every core. Carries a release binary built on the project machine (`strip`ped, in .devbin/);
# PyTorch is the machine's own. Writes JSON records to $OUT (or ./device-out).
#
#   cargo build --release && mkdir -p .devbin && cp target/release/repux .devbin/ && strip .devbin/repux
#   (device tool) run: bash tools/device_bench.sh   carry: [".devbin"]
set -u
B=${REPUX_BIN:-.devbin/repux}
O=${OUT:-device-out}
mkdir -p "$O"
PY=${PYTHON:-python3}
{
  echo "cores: $(nproc)"
  lscpu | grep -E "Model name|L2 cache|L3 cache"
  grep -o -m1 -E "avx512f" /proc/cpuinfo | head -1
  $PY -c "import torch; print('torch', torch.__version__)"
} > "$O/machine.txt" 2>&1
cat "$O/machine.txt"
run() { # name, timeout (s), command...
  local name=$1 t=$2; shift 2
  local s=$(date +%s)
  timeout "$t" "$@" > "$O/$name.json" 2> "$O/$name.err"
  echo "$name: rc $? in $(( $(date +%s) - s )) s"; tail -c 600 "$O/$name.json"; echo
}
two="taskset -c 0,1"
# Paper RepUX-Net at 2 × 96³, eval forward: the kernels issue's "≥ 2× PyTorch" target.
run repux_forward_2c 150 $two $B bench model --model-config paper --size 96 --batch 2 --repeats 1 --no-burn --forward-only --json
run torch_forward_2c 150 $two $PY tools/torch_bench.py --threads 2 --model paper --size 96 --batch 2 --no-kernels --forward-only --repeats 1
# The kernels table (repux only; burn's generic ops skipped).
run repux_kernels_2c 150 $two $B bench kernels --json --burn-limit-s 0 --repeats 3
# Every core: forward and training step, both sides.
run repux_model_all 200 $B bench model --model-config paper --size 96 --batch 2 --repeats 1 --no-burn --json
run torch_model_all 200 $PY tools/torch_bench.py --threads "$(nproc)" --model paper --size 96 --batch 2 --no-kernels --repeats 1
