#!/usr/bin/env python3
"""Times MONAI's HD95 + ASD + NSD on the same two masks `repux bench surface` uses (two
overlapping ellipsoids in 512×512×300 at 0.8×0.8×1.5 mm), with torch limited to 2 threads.

Usage (needs monai, torch, numpy, scipy): python3 tools/monai_surface_timing.py
"""
import time
import numpy as np
import torch
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance, compute_surface_dice

torch.set_num_threads(2)
shape, spacing = (512, 512, 300), (0.8, 0.8, 1.5)
s = np.array(shape, dtype=np.float64)
i, j, k = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij", sparse=True)


def ell(c, r):
    return ((i - c[0]) / r[0]) ** 2 + ((j - c[1]) / r[1]) ** 2 + ((k - c[2]) / r[2]) ** 2 < 1.0


a = ell(s * [0.5, 0.5, 0.5], s * [0.35, 0.3, 0.35])
b = ell(s * [0.52, 0.49, 0.5], s * [0.33, 0.31, 0.36])
# MONAI's metric functions take one-hot [B, C, ...] tensors; class 1 is the mask.
pred = torch.from_numpy(np.stack([~a, a])[None])
ref = torch.from_numpy(np.stack([~b, b])[None])
times = []
for _ in range(3):
    t = time.perf_counter()
    hd = compute_hausdorff_distance(pred, ref, include_background=False, percentile=95, spacing=spacing)
    asd = compute_average_surface_distance(pred, ref, include_background=False, symmetric=True, spacing=spacing)
    nsd = compute_surface_dice(pred, ref, class_thresholds=[1.0], include_background=False, spacing=spacing)
    times.append(time.perf_counter() - t)
print(f"monai HD95 {hd.item():.3f} mm, ASD {asd.item():.3f} mm, NSD@1mm {nsd.item():.4f}; median of 3: {sorted(times)[1]:.3f} s")
