#!/usr/bin/env python3
"""Writes crates/prep/tests/fixtures/resample.json: small random volumes resampled by
scipy.ndimage.map_coordinates at repux's pixel-centre coordinates x = (o + 0.5)·n_in/n_out − 0.5.

  linear  = order 1, mode 'nearest'   (trilinear, clamped edges)
  cubic   = order 3, mode 'mirror'    (cubic B-spline with prefilter)
  nearest = order 0, mode 'nearest'

Usage: pip install numpy scipy && python3 tools/scipy_resample_fixtures.py
"""
import json
import os
import numpy as np
from scipy import ndimage

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "prep", "tests", "fixtures", "resample.json")
rng = np.random.default_rng(7)
cases = []
for shape, out_shape in [((7, 9, 5), (4, 12, 9)), ((6, 6, 6), (11, 3, 6)), ((3, 10, 8), (5, 7, 13)), ((12, 4, 2), (5, 9, 4))]:
    data = rng.normal(0, 10, shape).astype(np.float64)
    coords = np.meshgrid(*[(np.arange(o) + 0.5) * n / o - 0.5 for n, o in zip(shape, out_shape)], indexing="ij")
    entry = {"shape": list(shape), "out_shape": list(out_shape), "data": data.ravel().tolist()}
    for name, order, mode in [("linear", 1, "nearest"), ("cubic", 3, "mirror"), ("nearest", 0, "nearest")]:
        entry[name] = ndimage.map_coordinates(data, coords, order=order, mode=mode, prefilter=True).ravel().tolist()
    # separate z: cubic in-plane (axes 0, 1), nearest along axis 2 — done as two scipy passes.
    inplane = np.stack([ndimage.map_coordinates(data[:, :, k], np.meshgrid(*[(np.arange(o) + 0.5) * n / o - 0.5 for n, o in zip(shape[:2], out_shape[:2])], indexing="ij"), order=3, mode="mirror") for k in range(shape[2])], axis=-1)
    zc = np.meshgrid(np.arange(out_shape[0]), np.arange(out_shape[1]), (np.arange(out_shape[2]) + 0.5) * shape[2] / out_shape[2] - 0.5, indexing="ij")
    entry["separate_z"] = ndimage.map_coordinates(inplane, zc, order=0, mode="nearest").ravel().tolist()
    cases.append(entry)
with open(OUT, "w") as f:
    json.dump(cases, f)
print("wrote", os.path.normpath(OUT))
