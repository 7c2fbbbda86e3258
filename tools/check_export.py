#!/usr/bin/env python3
"""Checks `repux model export` from the PyTorch side: the exported file loads with
`torch.load(weights_only=True)` (or safetensors) and `load_state_dict(strict=True)` into the
authors'-layout deploy network (tools/torch_reference.py, reparam "deploy": the kernels are
convolved as they are), and that network's logits equal `repux forward` on the model directory.

Usage (needs torch, numpy, safetensors; REPUX defaults to target/release/repux):
    python3 tools/check_export.py MODEL_DIR [--format pth|safetensors]
Exit status 1 when the logits differ by more than 1e-4 relative L2.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import Net  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--format", default="pth", choices=["pth", "safetensors"])
    ap.add_argument("--size", type=int, default=32)
    a = ap.parse_args()
    repux = os.environ.get("REPUX", os.path.join(os.path.dirname(__file__), "..", "target", "release", "repux"))
    cfg = json.load(open(os.path.join(a.model_dir, "config.json")))
    if cfg["arch"] == "swinunetr":
        sys.exit("SwinUNETR exports are MONAI's state dict; check them with MONAI's SwinUNETR")
    if cfg.get("reparam") == "sr":
        cfg["reparam"] = "none"  # exported folded: the plain network loads it
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, f"model.{a.format}")
        subprocess.run([repux, "model", "export", "-m", a.model_dir, "--format", a.format, "-o", out], check=True)
        if a.format == "pth":
            sd = torch.load(out, weights_only=True)
        else:
            from safetensors.torch import load_file
            sd = load_file(out)
        k = cfg.get("kernel_size") or (21 if cfg["arch"] == "repuxnet" else 7)
        net = Net(cfg["arch"], cfg["in_channels"], cfg["out_channels"], cfg["feature_size"], cfg["hidden_size"], k, cfg["alpha"], "deploy", tuple(cfg["depths"]))
        missing, unexpected = net.load_state_dict(sd, strict=True)
        net.eval()
        x = torch.randn(1, cfg["in_channels"], a.size, a.size, a.size, generator=torch.Generator().manual_seed(0))
        np.save(os.path.join(d, "x.npy"), x.numpy())
        subprocess.run([repux, "forward", "--weights", a.model_dir, "--input", os.path.join(d, "x.npy"), "--output", os.path.join(d, "y.npy")], check=True, stdout=subprocess.DEVNULL)
        ours = np.load(os.path.join(d, "y.npy")).astype(np.float64)
        with torch.no_grad():
            theirs = net.double()(x.double()).numpy()
        e = np.linalg.norm(ours - theirs) / np.linalg.norm(theirs)
        print(f"{a.format}: {len(sd)} tensors loaded strictly; PyTorch deploy network vs repux forward, relative L2 {e:.2e}")
        sys.exit(0 if e <= 1e-4 else 1)


if __name__ == "__main__":
    main()
