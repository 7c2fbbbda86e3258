#!/usr/bin/env python3
"""Step time and scaling efficiency of repux's data-parallel training on N nodes, from the ring
all-reduce's cost formula and measured inputs.

    python3 tools/scaling_model.py --compute 55.2 --values 65827829

Model (each node trains its own crops each step; weak scaling, global batch = N × local batch):
  * The gradient all-reduce runs after the backward pass (repux does not overlap it with
    compute), in buckets of BUCKET f32 values. A ring all-reduce of b bytes over p nodes takes
    2(p-1) steps of b/p bytes each: t = 2(p-1)·(α + b/(p·B)), B the link's bytes per second.
  * SyncBatchNorm and the loss average add `--small` all-reduces of a few hundred bytes per
    step; Open MPI reduces those by recursive doubling: ceil(log2 p)·α each.
  * Step time T(p) = compute + communication; scaling efficiency E(p) = compute / T(p).
Prints a Markdown table: for each node count and link, the communication time per step and
E(p); and the shortest per-node compute step that keeps E >= 90 % (9 × communication).
"""
import argparse
import math

BUCKET = 1 << 22  # repux_train::optim::BUCKET


def comm_seconds(p, values, gbit, latency, small):
    if p == 1:
        return 0.0
    bw = gbit * 1e9 / 8
    t = 0.0
    left = values * 4
    while left > 0:
        b = min(left, BUCKET * 4)
        t += 2 * (p - 1) * (latency + b / (p * bw))
        left -= b
    t += small * math.ceil(math.log2(p)) * latency
    return t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--compute", type=float, required=True,
                    help="seconds of one node's training step (forward, backward, AdamW)")
    ap.add_argument("--values", type=int, required=True, help="parameters (f32) all-reduced")
    ap.add_argument("--small", type=int, default=34,
                    help="small all-reduces per step (RepUX-Net: 8 BatchNorms × 4, loss, stop flag)")
    ap.add_argument("--latency-us", type=float, default=10.0,
                    help="per-message latency α of the network and MPI stack (assumed)")
    ap.add_argument("--nodes", default="8,16,32,64")
    ap.add_argument("--links", default="10,25,100", help="link speeds in Gbit/s")
    a = ap.parse_args()
    nodes = [int(v) for v in a.nodes.split(",")]
    links = [float(v) for v in a.links.split(",")]
    lat = a.latency_us * 1e-6
    print(f"compute {a.compute:.2f} s/step per node; {a.values} f32 ({a.values * 4 / 1e6:.1f} MB) "
          f"in {math.ceil(a.values / BUCKET)} buckets; α = {a.latency_us:g} µs\n")
    head = " | ".join(f"{g:g} Gbit/s: comm, E" for g in links)
    print(f"| nodes | {head} | compute for E ≥ 90 % ({', '.join(f'{g:g}' for g in links)} Gbit/s) |")
    print("|---" * (len(links) + 2) + "|")
    for p in nodes:
        cells, need = [], []
        for g in links:
            c = comm_seconds(p, a.values, g, lat, a.small)
            e = a.compute / (a.compute + c)
            cells.append(f"{c:.3f} s, {'**' if e >= 0.9 else ''}{100 * e:.1f} %{'**' if e >= 0.9 else ''}")
            need.append(f"{9 * c:.2f} s")
        print(f"| {p} | {' | '.join(cells)} | {', '.join(need)} |")


if __name__ == "__main__":
    main()
