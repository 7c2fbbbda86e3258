#!/usr/bin/env python3
"""Times scipy.ndimage resampling of the same input `repux bench resample` uses (512×512×300 at
0.78×0.78×1.25 mm → 1.5×1.5×2.0 mm, same smooth test field), cubic and linear, median of runs.
MONAI's `Spacing` is timed too when monai and torch are installed.

Usage: pip install numpy scipy [monai torch] && python3 tools/bench_resample.py
"""
import time
import numpy as np
from scipy import ndimage

shape, spacing, target = (512, 512, 300), (0.78, 0.78, 1.25), (1.5, 1.5, 2.0)
out = tuple(max(1, int(round(s * sp / t))) for s, sp, t in zip(shape, spacing, target))
a, b, k = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij", sparse=True)
data = (400 * np.sin(a * 0.05) * np.cos(b * 0.07) + 100 * np.sin(k * 0.11) - 200).astype(np.float32)
zoom = [o / s for o, s in zip(out, shape)]


def median_time(fn, repeats=3):
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]


print(f"input {shape} -> {out}")
for name, order, mode in [("cubic", 3, "mirror"), ("linear", 1, "nearest")]:
    t = median_time(lambda: ndimage.zoom(data, zoom, order=order, mode=mode, grid_mode=True))
    print(f"scipy.ndimage.zoom {name:<7} {t:8.3f} s")
try:
    import torch
    from monai.transforms import Spacing
    torch.set_num_threads(2)
    sp = Spacing(pixdim=target, mode="bilinear")
    from monai.data import MetaTensor
    img = MetaTensor(torch.from_numpy(data)[None], affine=torch.diag(torch.tensor(list(spacing) + [1.0])))
    t = median_time(lambda: sp(img))
    print(f"monai Spacing bilinear  {t:8.3f} s")
except ImportError:
    print("monai/torch not installed: MONAI Spacing not timed")
