#!/usr/bin/env bash
# Runs every comparison in docs/performance.md back to back on this machine, repux then its peer,
# and leaves the raw outputs in OUT (default perf-out/). Needs a release build and, for the peers,
# Python with torch, monai, einops and scipy (pip install torch monai einops scipy).
# Takes about 15 minutes on 2 cores; add --burn to include the slow burn-generic kernel runs.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-perf-out}
mkdir -p "$out"
repux=target/release/repux
cargo build --release -q
run() { local name=$1; shift; echo "== $name: $*"; "$@" > "$out/$name.txt" 2>&1; tail -n 25 "$out/$name.txt"; }
# Paper RepUX-Net eval forward, 2 × 96³, 2 threads: repux, PyTorch, repux again.
run paper_fwd_repux_1 $repux bench model --model-config paper --size 96 --no-burn --forward-only --repeats 1
run paper_fwd_torch python3 tools/torch_bench.py --threads 2 --model paper --size 96 --no-kernels --forward-only --repeats 1
run paper_fwd_repux_2 $repux bench model --model-config paper --size 96 --no-burn --forward-only --repeats 1
# Kernels (burn's generic ops only where a probe says they take < 1 s unless --burn).
limit=1; [[ "${1:-}" == "--burn" ]] && limit=400
run kernels $repux bench kernels --burn-limit-s $limit
# Surface metrics and resampling against MONAI / scipy.
run surface_repux $repux bench surface
run surface_monai python3 tools/monai_surface_timing.py
run resample_repux $repux bench resample
run resample_scipy python3 tools/bench_resample.py
