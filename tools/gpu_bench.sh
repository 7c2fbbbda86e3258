#!/usr/bin/env bash
# The GPU issue's measurements on a lent GPU machine (the `device` tool), in one call of at most
# 8 minutes: repux's GPU path (burn's wgpu backend on the machine's Vulkan driver) and PyTorch +
# cuDNN (the machine's own torch) on the same shapes, back to back. Writes JSON records and a
# log to $OUT (or ./gpu-out).
#
# Here, once (a release binary with the GPU path, and the Vulkan loader the machine may lack):
#   cargo build --release --features gpu && mkdir -p .gpubin && cp target/release/repux .gpubin/ && strip .gpubin/repux
#   echo /.gl/ >> .git/info/exclude; echo /.gpubin/ >> .git/info/exclude
#   mkdir -p .gl /tmp/amd64/partial; o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
#   apt-get $o update; (cd .gl && apt-get $o download libvulkan1)
# Then (device tool) run: bash tools/gpu_bench.sh   carry: [".gpubin", ".gl"]   timeout_s: 560
set -u
B=${REPUX_BIN:-.gpubin/repux}
O=${OUT:-gpu-out}
PY=${PYTHON:-python3}
mkdir -p "$O"
# The Vulkan loader, where the machine has none; NVIDIA's ICD where the loader finds no driver.
if ! ldconfig -p | grep -q libvulkan.so.1 && ls .gl/*.deb >/dev/null 2>&1; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$icd" ] && export VK_DRIVER_FILES=$icd
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())"
} > "$O/machine.txt" 2>&1
cat "$O/machine.txt"
run() { # name, timeout (s), command...
    local name=$1 t=$2
    shift 2
    local s
    s=$(date +%s)
    timeout "$t" "$@" > "$O/$name.json" 2>> "$O/log.txt"
    echo "$name: rc $? in $(($(date +%s) - s)) s" | tee -a "$O/log.txt"
    tail -c 400 "$O/$name.json"
    echo
}
# Depthwise 21³ and 7³ kernels, forward and forward+backward (the "≥ 5× cuDNN" target is k21 48·48³).
run repux_kernels 150 "$B" bench kernels --device gpu --json --repeats 5 --burn-limit-s 5
run torch_kernels 90 "$PY" tools/torch_bench.py --device cuda --no-model --repeats 5
# The paper network at 2 × 96³: eval forward and training step (the "≥ 1.5× cuDNN" target), with
# the device memory each side reserved.
run repux_model 150 "$B" bench model --device gpu --model-config paper --size 96 --batch 2 --repeats 3 --no-burn --json
run torch_model 90 "$PY" tools/torch_bench.py --device cuda --model paper --size 96 --batch 2 --repeats 3 --no-kernels
