#!/usr/bin/env python3
"""What PyTorch's CPU bf16 autocast loses on repux's parity fixtures: the anchor for the
accuracy contract of `--precision bf16` (crates/nn/tests/bf16.rs).

For each fixture network in crates/nn/tests/fixtures (the RepUX-Net / 3D UX-Net fixtures with
tools/torch_reference.py's network, SwinUNETR with MONAI's own), runs the fixture input through
the fixture weights under `torch.autocast("cpu", dtype=torch.bfloat16)` and writes, per
fixture, the relative L2 of those logits to the float64 logits stored beside them and the share
of voxels whose arg-max class agrees, as bf16_autocast.json. These networks have random
weights, so many voxels have nearly tied logits: that is why the contract is stated against
what PyTorch loses on the same weights rather than as a bare number.

What autocast loses depends on the CPU: oneDNN multiplies bf16 natively where the CPU has
AVX512-BF16 or AMX and emulates it otherwise, and the sums' order changes which values round
which way (SwinUNETR: 8.84e-3 on an AVX2 EPYC, 1.04e-2 on an AVX512-BF16 EPYC). Each run is
kept under "runs", keyed by the CPU and oneDNN's ISA, merged with the runs already in the file;
the top-level rel_l2 / argmax_agreement the test reads are the largest loss and the lowest
agreement over the runs.

Usage (torch 2.5, monai 1.5, safetensors, numpy):
    python3 tools/torch_bf16_fixtures.py --fixtures crates/nn/tests/fixtures
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import Net  # noqa: E402

# fixture name, weight file, the torch_reference network form the weights are for.
FIXTURES = [
    ("repux_k21", "repux_k21.pth", "deploy"),
    ("repux_k7_plain", "repux_k7_plain.safetensors", "none"),
    ("uxnet_k7", "uxnet_k7.pth", "none"),
    ("swinunetr_w3", "swinunetr_w3.pth", None),
]


def load(path):
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    sd = torch.load(path, weights_only=True)
    return sd.get("state_dict", sd)


def network(fx, name, weights, form):
    c = json.load(open(os.path.join(fx, name + ".json")))
    if c["arch"] == "swinunetr":
        from monai.networks.nets import SwinUNETR

        net = SwinUNETR(in_channels=c["in_channels"], out_channels=c["out_channels"], feature_size=c["feature_size"], window_size=c["window_size"])
    else:
        net = Net(c["arch"], c["in_channels"], c["out_channels"], c["feature_size"], c["hidden_size"], c["kernel_size"], c.get("alpha", 1.0), form)
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in load(os.path.join(fx, weights)).items()}
    net.load_state_dict(sd)
    return net.eval()


def cpu_key():
    """The CPU's model name and the ISA oneDNN runs bf16 on (native or emulated)."""
    model = "unknown CPU"
    flags = set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name") and model == "unknown CPU":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    if "amx_bf16" in flags:
        isa = "AMX-BF16"
    elif "avx512_bf16" in flags:
        isa = "AVX512-BF16"
    else:
        isa = "no bf16 unit: " + ("AVX-512" if "avx512f" in flags else "AVX2")
    return f"{model}, {isa}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", required=True)
    a = ap.parse_args()
    path = os.path.join(a.fixtures, "bf16_autocast.json")
    old = json.load(open(path)) if os.path.exists(path) else {}
    cpu = cpu_key()
    out = {}
    for name, weights, form in FIXTURES:
        net = network(a.fixtures, name, weights, form)
        x = torch.from_numpy(np.load(os.path.join(a.fixtures, name + "_input.npy")))
        want = np.load(os.path.join(a.fixtures, name + "_logits.npy")).astype(np.float64)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            got = net(x).double().numpy()
        rel = float(np.linalg.norm(got - want) / np.linalg.norm(want))
        agree = float((got.argmax(1) == want.argmax(1)).mean())
        runs = dict(old.get(name, {}).get("runs", {}))
        runs[cpu] = {"rel_l2": rel, "argmax_agreement": agree}
        out[name] = {
            "rel_l2": max(r["rel_l2"] for r in runs.values()),
            "argmax_agreement": min(r["argmax_agreement"] for r in runs.values()),
            "runs": runs,
        }
        print(f"{name}: relative L2 {rel:.3e}, arg-max agreement {100 * agree:.4f} % ({cpu})")
    out["_written_by"] = f"tools/torch_bf16_fixtures.py, torch {torch.__version__}"
    with open(path, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
