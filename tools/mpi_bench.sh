#!/usr/bin/env bash
# Data-parallel throughput on one machine: 1 process × 2 threads × 2 crops against
# 2 MPI ranks × 1 thread × 1 crop (the same global batch), back to back, on a synthetic dataset.
#   cargo build --release --features mpi && tools/mpi_bench.sh [PRESET] [PATCH] [STEPS]
# Prints seconds per step of each (the median of the logged step times after the first) and the
# share of the 2-rank step spent in collectives (log.jsonl's comm_seconds; waiting included).
# Each run is stopped through its STOP file once it has logged STEPS steps, so no validation
# pass (minutes with the paper network) runs.
set -euo pipefail
preset="${1:-tiny}"; patch="${2:-64,64,64}"; steps="${3:-12}"
repux="$(pwd)/target/release/repux"
w="$(mktemp -d)"
trap 'rm -rf "$w"' EXIT
"$repux" synth --out "$w/ds" --cases 4 --seed 1 >/dev/null
# 0.8 mm spacing keeps the phantoms larger than the patch, so the planner does not shrink it.
"$repux" plan "$w/ds" -o "$w/plans.json" --target-spacing 0.8,0.8,0.8 --patch-size "$patch" \
    --ct-window=-125,275 >/dev/null
python3 - "$w/plans.json" "$patch" <<'PY'
import json, sys
got = json.load(open(sys.argv[1]))["patch_size"]
want = [int(v) for v in sys.argv[2].split(",")]
if got != want:
    sys.exit(f"the planner chose patch {got}, not {want}: use a finer target spacing")
PY
"$repux" preprocess "$w/ds" --plans "$w/plans.json" --cache "$w/cache" >/dev/null
args=(train "$w/ds" --plans "$w/plans.json" --cache "$w/cache" --fold all --model-preset "$preset"
      --iterations 1000000 --val-interval 1000000 --augment none)

# Runs "$@" in the background and stops it through $run/STOP after $steps logged steps.
until_steps() {
    local run="$1"; shift
    "$@" >/dev/null &
    local pid=$!
    until [ -f "$run/log.jsonl" ] && [ "$(wc -l < "$run/log.jsonl")" -ge "$steps" ]; do
        kill -0 "$pid" 2>/dev/null || { wait "$pid"; echo "the $run run ended early" >&2; exit 1; }
        sleep 1
    done
    touch "$run/STOP"
    # A run stopped this way exits 130, as after Ctrl-C.
    local rc=0; wait "$pid" || rc=$?
    [ "$rc" -eq 0 ] || [ "$rc" -eq 130 ] || { echo "the $run run failed ($rc)" >&2; exit 1; }
}
until_steps "$w/one" env RAYON_NUM_THREADS=2 "$repux" "${args[@]}" --out "$w/one" --crops-per-volume 2
until_steps "$w/two" mpirun -np 2 --oversubscribe --allow-run-as-root -x RAYON_NUM_THREADS=1 \
    "$repux" "${args[@]}" --out "$w/two" --crops-per-volume 1
python3 - "$w" "$steps" <<'PY'
import json, statistics, sys
def step(run, key="seconds"):
    lines = open(f"{sys.argv[1]}/{run}/log.jsonl").read().splitlines()[: int(sys.argv[2])]
    s = [json.loads(l)[key] for l in lines]
    return statistics.median(b - a for a, b in zip(s[1:], s[2:]))
a, b, c = step("one"), step("two"), step("two", "comm_seconds")
print(f"1 rank x 2 threads: {a:.3f} s/step; 2 ranks x 1 thread: {b:.3f} s/step; ratio {a / b:.2f}; "
      f"collectives {c:.3f} s/step ({100 * c / b:.1f} % of the 2-rank step)")
PY
