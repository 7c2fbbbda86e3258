#!/usr/bin/env python3
"""Writes crates/eval/tests/fixtures/metrics.json: small random label maps (anisotropic spacing)
and their per-class metrics computed with scipy, following MONAI's definitions:
edges = mask XOR binary_erosion(mask) (6-connectivity, outside = background; MONAI get_mask_edges),
distances from scipy.ndimage.distance_transform_edt(~edges, sampling=spacing),
HD95 = max of directed 95th percentiles (compute_hausdorff_distance, percentile=95),
ASD = mean of both directions concatenated (compute_average_surface_distance, symmetric=True),
NSD = fraction of both edge sets within tolerance (compute_surface_dice).

Usage: pip install numpy scipy && python3 tools/metric_fixtures.py
"""
import json
import os
import numpy as np
from scipy import ndimage

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "eval", "tests", "fixtures", "metrics.json")
rng = np.random.default_rng(3)


def blobs(shape, n, classes):
    lab = np.zeros(shape, np.int32)
    zz, yy, xx = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    for _ in range(n):
        c = [rng.uniform(0, s) for s in shape]
        r = [rng.uniform(2, s / 3) for s in shape]
        m = ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2 < 1
        lab[m] = rng.integers(1, classes + 1)
    return lab


def metrics(pred, ref, spacing, tol):
    tp = int(np.sum(pred & ref)); fp = int(np.sum(pred & ~ref)); fn = int(np.sum(~pred & ref))
    out = {"TP": tp, "FP": fp, "FN": fn}
    if pred.sum() == 0 or ref.sum() == 0:
        return out
    out["Dice"] = 2 * tp / (2 * tp + fp + fn)
    out["IoU"] = tp / (tp + fp + fn)
    pe = pred ^ ndimage.binary_erosion(pred)
    re = ref ^ ndimage.binary_erosion(ref)
    d1 = ndimage.distance_transform_edt(~re, sampling=spacing)[pe]
    d2 = ndimage.distance_transform_edt(~pe, sampling=spacing)[re]
    out["HD95"] = float(max(np.percentile(d1, 95), np.percentile(d2, 95)))
    out["ASD"] = float(np.concatenate([d1, d2]).mean())
    out["NSD"] = float((np.sum(d1 <= tol) + np.sum(d2 <= tol)) / (len(d1) + len(d2)))
    return out


cases = []
for shape, spacing in [((20, 24, 16), (0.8, 0.9, 2.5)), ((12, 18, 22), (1.5, 1.0, 1.0)), ((16, 16, 16), (1.0, 1.0, 1.0))]:
    ref = blobs(shape, 4, 3)
    pred = ref.copy()
    # A realistic prediction: shift one class, erode another, add a false blob.
    pred[np.roll(ref == 1, 1, axis=0)] = 1
    pred[(ref == 2) & ~ndimage.binary_erosion(ref == 2)] = 0
    pred[blobs(shape, 1, 3) > 0] = 3
    entry = {"shape": list(shape), "spacing": list(spacing), "tolerance": 1.5, "pred": pred.ravel().tolist(), "ref": ref.ravel().tolist(), "classes": {}}
    for c in (1, 2, 3):
        entry["classes"][str(c)] = metrics(pred == c, ref == c, spacing, 1.5)
    cases.append(entry)
with open(OUT, "w") as f:
    json.dump(cases, f)
print("wrote", os.path.normpath(OUT))
