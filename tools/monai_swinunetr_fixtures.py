#!/usr/bin/env python3
"""Parity fixtures for repux's SwinUNETR, written by MONAI itself.

Builds `monai.networks.nets.SwinUNETR` (MONAI 1.5, torch from PyPI) in small configurations with
random weights, and writes for each: the state dict as `torch.save` .pth (MONAI's key names,
relative_position_index buffers included; floating tensors stored as float16 to keep the repo
small — the network is evaluated with exactly those rounded weights), a model config for repux,
an input and the logits (computed in float64). Also prints the parameter counts of the presets
(`sum(p.numel() for p in model.parameters())`), which crates/nn/tests/networks.rs asserts.

Usage:
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch "monai==1.5.1" einops numpy
    /tmp/venv/bin/python tools/monai_swinunetr_fixtures.py --out crates/nn/tests/fixtures
"""
import argparse
import json
import os

import numpy as np
import torch
from monai.networks.nets import SwinUNETR

# name: (MONAI kwargs, input shape). window 3 on a 32×32×64 input: every stage pads its
# windows, shifted windows with masks run at stages 1–3, and the last stage clips the window
# on two axes but not the third.
FIXTURES = {
    "swinunetr_w3": (dict(in_channels=1, out_channels=3, feature_size=12, window_size=3), (1, 1, 32, 32, 64)),
}
# Key names and shapes only (no weights): v2 blocks and the v2 patch merging.
KEYS_ONLY = {
    "swinunetr_v2_keys": dict(in_channels=2, out_channels=4, feature_size=12, window_size=3, use_v2=True, downsample="mergingv2"),
}


def repux_config(kw):
    c = dict(arch="swinunetr", in_channels=kw["in_channels"], out_channels=kw["out_channels"], feature_size=kw["feature_size"], window_size=kw["window_size"])
    if kw.get("use_v2"):
        c["use_v2"] = True
    if kw.get("downsample"):
        c["downsample"] = kw["downsample"]
    return c


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="crates/nn/tests/fixtures")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(0)
    for name, (kw, shape) in FIXTURES.items():
        net = SwinUNETR(**kw)
        with torch.no_grad():
            for p in net.parameters():
                # Wider than the init so every path (biases, norms, the position table) matters.
                p.add_(0.05 * torch.randn_like(p))
                p.copy_(p.half().float())
        net.eval()
        sd = {k: (v.half() if v.is_floating_point() else v) for k, v in net.state_dict().items()}
        torch.save(sd, os.path.join(a.out, f"{name}.pth"))
        x = torch.randn(*shape)
        with torch.no_grad():
            y = net.double()(x.double())
        np.save(os.path.join(a.out, f"{name}_input.npy"), x.numpy().astype(np.float32))
        np.save(os.path.join(a.out, f"{name}_logits.npy"), y.float().numpy())
        with open(os.path.join(a.out, f"{name}.json"), "w") as f:
            json.dump(repux_config(kw), f, indent=1)
        print(name, "params", sum(p.numel() for p in net.parameters()), "logits", tuple(y.shape))
    for name, kw in KEYS_ONLY.items():
        net = SwinUNETR(**kw)
        keys = {k: list(v.shape) for k, v in net.state_dict().items()}
        with open(os.path.join(a.out, f"{name}.json"), "w") as f:
            json.dump(dict(config=repux_config(kw), keys=keys), f, indent=0)
        print(name, len(keys), "keys")
    for fs in (48, 24, 12):
        net = SwinUNETR(in_channels=1, out_channels=14, feature_size=fs)
        print(f"feature_size {fs}, 14 classes: {sum(p.numel() for p in net.parameters())} parameters")


if __name__ == "__main__":
    main()
