#!/usr/bin/env python3
"""MetaImage conformance fixtures written by SimpleITK (ITK's own MetaImage writer), and the
geometry and values SimpleITK reports for them, for crates/volume/tests/metaimage.rs.

    pip install SimpleITK numpy
    python3 tools/metaimage_fixtures.py              # writes crates/volume/tests/fixtures/metaimage/
    python3 tools/metaimage_fixtures.py --check F…   # SimpleITK reads files repux wrote; prints them

The affine in expected.json is repux's convention, RAS: ITK's LPS index-to-point matrix
(direction · diag(spacing), origin) with the x and y rows negated.
"""
import argparse
import json
import math
import os

import numpy as np
import SimpleITK as sitk

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "volume", "tests", "fixtures", "metaimage")


def ras_affine(img):
    d = np.array(img.GetDirection()).reshape(3, 3)
    a = np.eye(4)
    a[:3, :3] = d @ np.diag(img.GetSpacing())
    a[:3, 3] = img.GetOrigin()
    a[0, :] *= -1
    a[1, :] *= -1
    a[3, :] = [0, 0, 0, 1]
    return a


def describe(path):
    img = sitk.ReadImage(path)
    arr = sitk.GetArrayFromImage(img).astype(np.float64)  # z, y, x (, components)
    comps = img.GetNumberOfComponentsPerPixel()
    # Probe voxels: (x, y, z, component) → value.
    size = img.GetSize()
    probes = []
    rng = np.random.default_rng(7)
    for _ in range(6):
        x, y, z = (int(rng.integers(0, s)) for s in size)
        c = int(rng.integers(0, comps))
        v = arr[z, y, x, c] if comps > 1 else arr[z, y, x]
        probes.append([x, y, z, c, float(v)])
    return {
        "shape": list(size),
        "channels": comps,
        "spacing": list(img.GetSpacing()),
        "affine": ras_affine(img).tolist(),
        "sum": float(arr.sum()),
        "min": float(arr.min()),
        "max": float(arr.max()),
        "probes": probes,
    }


def oblique(angle):
    c, s = math.cos(angle), math.sin(angle)
    return [c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", nargs="*")
    args = ap.parse_args()
    if args.check:
        for p in args.check:
            print(p, json.dumps(describe(p)))
        return
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(0)
    expected = {}

    # int16 CT-like values on an oblique grid, uncompressed and compressed.
    a = rng.integers(-1024, 2000, size=(7, 6, 5), dtype=np.int16)  # z, y, x
    img = sitk.GetImageFromArray(a)
    img.SetSpacing((0.7, 0.8, 2.5))
    img.SetOrigin((-12.5, 30.25, -100.0))
    img.SetDirection(oblique(0.3))
    for name, comp in [("oblique_int16.mha", False), ("oblique_int16_zlib.mha", True)]:
        sitk.WriteImage(img, os.path.join(OUT, name), useCompression=comp)

    # uint8 labels as .mhd + .raw, with flipped axes (an LPS-stored RAS volume).
    lab = rng.integers(0, 5, size=(4, 9, 8), dtype=np.uint8)
    li = sitk.GetImageFromArray(lab)
    li.SetSpacing((1.5, 1.5, 3.0))
    li.SetOrigin((100.0, 120.0, -50.0))
    li.SetDirection([-1, 0, 0, 0, -1, 0, 0, 0, 1])
    sitk.WriteImage(li, os.path.join(OUT, "labels_u8.mhd"))

    # float32 two-component (vector) image, compressed, permuted axes.
    v = rng.standard_normal((3, 4, 5, 2)).astype(np.float32)
    vi = sitk.GetImageFromArray(v, isVector=True)
    vi.SetSpacing((1.0, 2.0, 0.5))
    vi.SetOrigin((1.0, 2.0, 3.0))
    vi.SetDirection([0, 0, 1, 1, 0, 0, 0, 1, 0])
    sitk.WriteImage(vi, os.path.join(OUT, "vector_f32_zlib.mha"), useCompression=True)

    # float64 (ITK writes little-endian only; the Rust test builds a big-endian file itself).
    d = rng.standard_normal((2, 3, 4)) * 1e3
    di = sitk.GetImageFromArray(d)
    di.SetSpacing((0.5, 0.5, 0.5))
    sitk.WriteImage(di, os.path.join(OUT, "double.mha"))

    for f in sorted(os.listdir(OUT)):
        if f.endswith((".mha", ".mhd")):
            expected[f] = describe(os.path.join(OUT, f))
    with open(os.path.join(OUT, "expected.json"), "w") as fh:
        json.dump(expected, fh, indent=1)
    print("wrote", len(expected), "fixtures to", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
