#!/usr/bin/env python3
"""DICOM conformance fixtures: small CT series written by pydicom in several transfer syntaxes,
and what dcm2niix (the reference converter) makes of each, for crates/volume/tests/dicom.rs.

    pip install pydicom numpy nibabel; apt-get install dcm2niix
    python3 tools/dicom_fixtures.py      # writes crates/volume/tests/fixtures/dicom/

expected.json holds, per series folder, dcm2niix's NIfTI affine (RAS) and its voxel values
(nibabel's get_fdata, i.e. with RescaleSlope/Intercept applied) in dcm2niix's own axis order;
the Rust test maps each of repux's voxels through both affines and compares values, so it checks
the geometry to 1e-4 mm and the values exactly whatever axis order dcm2niix chose.
"""
import json
import os
import shutil
import subprocess
import tempfile

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "volume", "tests", "fixtures", "dicom")
ROWS, COLS, SLICES = 6, 8, 5


def series(folder, syntax, *, slope=1.0, intercept=-1024.0, oblique=True, seed=0, shuffle=True):
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    study, uid = generate_uid(), generate_uid()
    a = 0.2 if oblique else 0.0
    row_dir = np.array([np.cos(a), np.sin(a), 0.0])  # direction of increasing column index
    col_dir = np.array([-np.sin(a) * np.cos(0.1), np.cos(a) * np.cos(0.1), np.sin(0.1)])
    col_dir -= row_dir * row_dir.dot(col_dir)
    col_dir /= np.linalg.norm(col_dir)
    normal = np.cross(row_dir, col_dir)
    spacing = (0.75, 0.6)  # PixelSpacing: row spacing, column spacing
    step = 2.5
    origin = np.array([-40.0, 25.0, 110.0])
    order = rng.permutation(SLICES) if shuffle else np.arange(SLICES)
    for n, k in enumerate(order):
        stored = rng.integers(0, 3000, size=(ROWS, COLS)).astype(np.uint16)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "CT"
        ds.PatientID = "REPUX-FIXTURE"
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = uid
        ds.SeriesDescription = os.path.basename(folder)
        ds.SeriesNumber = 1
        ds.InstanceNumber = int(k) + 1
        ds.ImageOrientationPatient = [float(x) for x in np.concatenate([row_dir, col_dir])]
        ds.ImagePositionPatient = [float(x) for x in origin + normal * step * k]
        ds.PixelSpacing = list(spacing)
        ds.SliceThickness = 3.0  # deliberately not the step: repux measures the step
        ds.Rows, ds.Columns = ROWS, COLS
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelRepresentation = 0
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        ds.PixelData = stored.tobytes()
        if syntax == RLELossless:
            ds.compress(RLELossless, stored)
        elif syntax == ImplicitVRLittleEndian:
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        elif syntax == DeflatedExplicitVRLittleEndian:
            ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        ds.save_as(os.path.join(folder, f"IM{n:04d}.dcm"), enforce_file_format=True)


def dcm2niix(folder):
    with tempfile.TemporaryDirectory() as t:
        subprocess.run(["dcm2niix", "-z", "n", "-b", "n", "-f", "out", "-o", t, folder],
                       check=True, capture_output=True)
        img = nib.load(os.path.join(t, "out.nii"))
        return img.affine.tolist(), np.asarray(img.get_fdata()).tolist()


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    cases = {
        "explicit_le": dict(syntax=ExplicitVRLittleEndian, seed=1),
        "implicit_le": dict(syntax=ImplicitVRLittleEndian, seed=2, oblique=False),
        "deflated": dict(syntax=DeflatedExplicitVRLittleEndian, seed=3),
        "rle": dict(syntax=RLELossless, seed=4, slope=0.5, intercept=-1000.0),
    }
    expected = {}
    for name, kw in cases.items():
        folder = os.path.join(OUT, name)
        series(folder, **kw)
        if kw["syntax"] == DeflatedExplicitVRLittleEndian:
            # dcm2niix cannot inflate: its reference is the same series, explicit VR LE.
            with tempfile.TemporaryDirectory() as twin:
                series(twin, **{**kw, "syntax": ExplicitVRLittleEndian})
                affine, data = dcm2niix(twin)
        else:
            affine, data = dcm2niix(folder)
        expected[name] = {"affine": affine, "data": data}
    with open(os.path.join(OUT, "expected.json"), "w") as fh:
        json.dump(expected, fh)
    print("wrote", len(cases), "series to", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
