#!/usr/bin/env python3
"""Writes the I/O parity fixtures under crates/volume/tests/fixtures/ and their expected values.

Real files: small images bundled with nibabel's and nilearn's own test data (public packages).
Edge cases: written here with nibabel and pynrrd (qform-only oblique with qfac -1, no xform codes,
scaled data, every supported dtype, .hdr/.img pairs, NIfTI-2 .nii, NaN voxels, NRRD raw/gzip
with LPS space and a vector axis). expected.json holds what nibabel (and pynrrd, for NRRD)
reports: shape, on-disk dtype, zooms, best affine, orientation codes, stats of get_fdata().

Usage (once; commit the output):
    pip install nibabel nilearn pynrrd numpy pytest
    python3 tools/nibabel_fixtures.py
"""
import json
import os
import shutil
import numpy as np
import nibabel as nib
import nrrd

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "crates", "volume", "tests", "fixtures")
NIB_DATA = os.path.join(os.path.dirname(nib.__file__), "tests", "data")

os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(1234)
expected = {}


def record(name, img=None):
    path = os.path.join(OUT, name)
    if img is None:
        img = nib.load(path)
    data = np.asarray(img.get_fdata(dtype=np.float64))
    dt = img.get_data_dtype()
    expected[name] = {
        "shape": list(img.shape),
        "datatype": np.dtype(dt).newbyteorder("=").name,
        "spacing": [float(z) for z in (list(img.header.get_zooms()) + [1.0, 1.0, 1.0])[:3]],
        "affine": img.affine.tolist(),
        "orientation": "".join(nib.aff2axcodes(img.affine)),
        "min": float(np.min(data)),
        "max": float(np.max(data)),
        "mean": float(np.mean(data)),
        "sum": float(np.sum(data)),
    }


# 1. Real files from public packages.
for f in ["standard.nii.gz", "example_nifti2.nii.gz", "anatomical.nii", "functional.nii", "reoriented_anat_moved.nii"]:
    shutil.copy(os.path.join(NIB_DATA, f), os.path.join(OUT, f))
    record(f)
try:
    import nilearn
    src = os.path.join(os.path.dirname(nilearn.__file__), "datasets", "data", "image_10426.nii.gz")
    shutil.copy(src, os.path.join(OUT, "nilearn_image_10426.nii.gz"))
    record("nilearn_image_10426.nii.gz")
except ImportError:
    print("nilearn not installed: skipping its file")

# 2. Edge cases written with nibabel.
shape = (7, 6, 5)


def save(img, name):
    nib.save(img, os.path.join(OUT, name))
    record(name)


# qform only, oblique, negative determinant (qfac = -1)
c, s = np.cos(0.4), np.sin(0.4)
aff = np.array([[0.9 * c, -0.8 * s, 0, 12.5], [0.9 * s, 0.8 * c, 0, -7.25], [0, 0, -2.5, 30.0], [0, 0, 0, 1]])
img = nib.Nifti1Image(rng.integers(-500, 500, shape).astype(np.int16), None)
img.set_qform(aff, code=1)
img.set_sform(None, code=0)
save(img, "qform_only_oblique.nii")

# no xform codes at all: nibabel's centred base affine with x flipped
img = nib.Nifti1Image(rng.integers(0, 100, shape).astype(np.int32), None)
img.header.set_zooms((1.5, 2.0, 3.0))
img.set_qform(None, code=0)
img.set_sform(None, code=0)
save(img, "no_codes.nii.gz")

# scaled uint8 (scl_slope / scl_inter), LPS sform
aff_lps = np.diag([-0.75, -0.75, 3.0, 1.0])
aff_lps[:3, 3] = [100.0, 80.0, -50.0]
img = nib.Nifti1Image(rng.integers(0, 255, shape).astype(np.uint8), aff_lps)
img.header.set_slope_inter(0.5, -10.0)
img.set_data_dtype(np.uint8)
save(img, "scaled_u8_lps.nii.gz")

# every supported dtype
for dt in ["int8", "uint16", "uint32", "int32", "float32", "float64", "int64", "uint64"]:
    hi = 100 if dt == "int8" else 1000
    arr = rng.integers(0, hi, shape).astype(dt) if "int" in dt else rng.normal(0, 100, shape).astype(dt)
    img = nib.Nifti1Image(arr, np.diag([1.0, 1.25, 2.5, 1.0]), dtype=dt)
    save(img, f"dtype_{dt}.nii.gz")

# .hdr/.img pairs, plain and gzipped
img = nib.Nifti1Pair(rng.normal(0, 1, shape).astype(np.float32), aff_lps)
save(img, "pair.hdr")
img = nib.Nifti1Pair(rng.integers(-100, 100, shape).astype(np.int16), aff)
save(img, "pair_gz.hdr.gz")

# NIfTI-2 single file, 4-D (channels)
img = nib.Nifti2Image(rng.normal(0, 5, shape + (2,)).astype(np.float32), aff)
save(img, "nifti2_4d.nii")

# NaN voxels
arr = rng.normal(0, 1, shape).astype(np.float32)
arr[1, 2, 3] = np.nan
save(nib.Nifti1Image(arr, np.eye(4)), "with_nan.nii.gz")

# 3. NRRD via pynrrd: expected values converted to RAS+ here, independently of repux.
def nrrd_record(name, data, header, ras_affine, shape_out):
    nrrd.write(os.path.join(OUT, name), data, header, index_order="F")
    back, _ = nrrd.read(os.path.join(OUT, name), index_order="F")
    d = back.astype(np.float64)
    expected[name] = {
        "shape": shape_out,
        "datatype": np.dtype(data.dtype).newbyteorder("=").name,
        "spacing": [float(np.linalg.norm(ras_affine[:3, i])) for i in range(3)],
        "affine": ras_affine.tolist(),
        "orientation": "".join(nib.aff2axcodes(ras_affine)),
        "min": float(d.min()), "max": float(d.max()), "mean": float(d.mean()), "sum": float(d.sum()),
    }

dirs = np.array([[0.7, 0.0, 0.0], [0.0, 0.7, 0.0], [0.0, 0.0, 2.0]])  # rows = axes
origin = np.array([-20.0, 15.0, 40.0])
lps_to_ras = np.diag([-1.0, -1.0, 1.0])
ras = np.eye(4)
ras[:3, :3] = lps_to_ras @ dirs.T
ras[:3, 3] = lps_to_ras @ origin
arr = rng.integers(-1000, 1000, shape).astype(np.int16)
hdr = {"space": "left-posterior-superior", "space directions": dirs, "space origin": origin, "kinds": ["domain"] * 3}
nrrd_record("lps_raw.nrrd", arr, dict(hdr, encoding="raw"), ras, list(shape))
nrrd_record("lps_gzip.nrrd", arr, dict(hdr, encoding="gzip"), ras, list(shape))
# vector axis first (as 3D Slicer writes multi-component images)
vec = rng.normal(0, 1, (2,) + shape).astype(np.float32)
hdr_v = {"space": "left-posterior-superior", "space directions": np.vstack([[np.nan] * 3, dirs]), "space origin": origin,
         "kinds": ["vector", "domain", "domain", "domain"], "encoding": "gzip"}
nrrd_record("vector_first.nrrd", vec, hdr_v, ras, list(shape) + [2])

def no_nan(v):
    # JSON has no NaN: write null (the Rust side reads null as NaN).
    if isinstance(v, float) and np.isnan(v):
        return None
    if isinstance(v, dict):
        return {k: no_nan(x) for k, x in v.items()}
    if isinstance(v, list):
        return [no_nan(x) for x in v]
    return v


with open(os.path.join(OUT, "expected.json"), "w") as f:
    json.dump(no_nan(expected), f, indent=1, sort_keys=True, allow_nan=False)
print(f"wrote {len(expected)} fixtures to {os.path.normpath(OUT)}")
