#!/usr/bin/env bash
# Data-parallel throughput on one machine: 1 process × 2 threads × 2 crops against
# 2 MPI ranks × 1 thread × 1 crop (the same global batch), back to back, on a synthetic dataset.
#   cargo build --release --features mpi && tools/mpi_bench.sh [PRESET] [PATCH] [ITERATIONS]
# Prints seconds per step of each (the median of the logged step times after the first).
set -euo pipefail
preset="${1:-tiny}"; patch="${2:-64,64,64}"; iters="${3:-12}"
repux="$(pwd)/target/release/repux"
w="$(mktemp -d)"
"$repux" synth --out "$w/ds" --cases 4 --seed 1 >/dev/null
"$repux" plan "$w/ds" -o "$w/plans.json" --target-spacing 2,2,2 --patch-size "$patch" --ct-window=-125,275 >/dev/null
"$repux" preprocess "$w/ds" --plans "$w/plans.json" --cache "$w/cache" >/dev/null
args=(train "$w/ds" --plans "$w/plans.json" --cache "$w/cache" --fold all --model-preset "$preset"
      --iterations "$iters" --val-interval 100000 --augment none)
RAYON_NUM_THREADS=2 "$repux" "${args[@]}" --out "$w/one" --crops-per-volume 2 >/dev/null
mpirun -np 2 --oversubscribe --allow-run-as-root -x RAYON_NUM_THREADS=1 \
    "$repux" "${args[@]}" --out "$w/two" --crops-per-volume 1 >/dev/null
python3 - "$w" <<'PY'
import json, statistics, sys
def step(run):
    s = [json.loads(l)["seconds"] for l in open(f"{sys.argv[1]}/{run}/log.jsonl")]
    return statistics.median(b - a for a, b in zip(s[1:], s[2:]))
a, b = step("one"), step("two")
print(f"1 rank x 2 threads: {a:.3f} s/step; 2 ranks x 1 thread: {b:.3f} s/step; ratio {a / b:.2f}")
PY
rm -rf "$w"
