#!/usr/bin/env python3
"""A small TCIA Pancreas-CT tree as NBIA and the TCIA label release ship it, for the recipe's
end-to-end test (crates/cli/tests/cli.rs):

    Pancreas-CT/PANCREAS_NNNN/<study>/<series>/1-NNN.dcm     one axial CT series per patient
    TCIA_pancreas_labels-02-05-2017/labelNNNN.nii.gz         pancreas = 1 (PANCREAS_0003 has none)

    pip install pydicom numpy nibabel; apt-get install dcm2niix
    python3 tools/tcia_fixture.py     # writes crates/volume/tests/fixtures/tcia/

The label NIfTIs are what dcm2niix makes of a DICOM series holding the mask, so they lie on the
world grid dcm2niix gives the CT series — the grid repux must read the series on.
"""
import os
import shutil
import subprocess
import tempfile

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "volume", "tests", "fixtures", "tcia")
ROWS, COLS, SLICES = 32, 32, 12
SPACING, STEP = 2.0, 2.5


def phantom(seed):
    """HU volume (slices, rows, columns) and its pancreas mask: air, a soft-tissue body, a
    brighter elongated pancreas."""
    rng = np.random.default_rng(seed)
    k, y, x = np.meshgrid(np.arange(SLICES), np.arange(ROWS), np.arange(COLS), indexing="ij")
    body = ((x - 15.5) / 14) ** 2 + ((y - 15.5) / 11) ** 2 < 1
    cy, cx = 14 + seed, 12 + seed
    pancreas = (((x - cx) / 7) ** 2 + ((y - cy) / 3) ** 2 + ((k - 6) / 4) ** 2) < 1
    hu = np.where(body, 40, -1000) + np.where(pancreas, 70, 0) + rng.normal(0, 10, body.shape)
    return np.round(hu).astype(np.int16), pancreas.astype(np.int16)


def write_series(folder, values, *, intercept, patient, study, frame_of_reference, series_uid):
    os.makedirs(folder, exist_ok=True)
    origin = np.array([-32.0, -20.0, -100.0])
    for n in range(SLICES):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality = "CT"
        ds.PatientID = ds.PatientName = patient
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series_uid
        ds.FrameOfReferenceUID = frame_of_reference
        ds.SeriesNumber, ds.InstanceNumber = 1, n + 1
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        # Slices run head to feet as TCIA's do: z decreases with the instance number.
        ds.ImagePositionPatient = [float(v) for v in origin + np.array([0.0, 0.0, -STEP * n])]
        ds.PixelSpacing = [SPACING, SPACING]
        ds.SliceThickness = STEP
        ds.Rows, ds.Columns = ROWS, COLS
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1.0, float(intercept)
        ds.PixelData = (values[n] - intercept).astype(np.int16).tobytes()
        ds.save_as(os.path.join(folder, f"1-{n + 1:03d}.dcm"), enforce_file_format=True)


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    labels_dir = os.path.join(OUT, "TCIA_pancreas_labels-02-05-2017")
    os.makedirs(labels_dir)
    for p in (1, 2, 3):
        hu, mask = phantom(p)
        patient = f"PANCREAS_{p:04d}"
        study, frame = generate_uid(), generate_uid()
        series = os.path.join(OUT, "Pancreas-CT", patient, f"11-24-2015-PANCREAS{p:04d}-Pancreas-1895{p}",
                              f"Pancreas-9966{p}")
        write_series(series, hu, intercept=-1024, patient=patient, study=study,
                     frame_of_reference=frame, series_uid=generate_uid())
        if p == 3:
            continue  # a patient without a label: a test case
        with tempfile.TemporaryDirectory() as t:
            write_series(os.path.join(t, "mask"), mask, intercept=0, patient=patient, study=study,
                         frame_of_reference=frame, series_uid=generate_uid())
            subprocess.run(["dcm2niix", "-z", "n", "-b", "n", "-f", "mask", "-o", t, os.path.join(t, "mask")],
                           check=True, capture_output=True)
            img = nib.load(os.path.join(t, "mask.nii"))
            label = nib.Nifti1Image(np.asarray(img.dataobj).astype(np.uint8), img.affine)
            label.set_qform(img.affine, code=1)
            label.set_sform(img.affine, code=1)
            nib.save(label, os.path.join(labels_dir, f"label{p:04d}.nii.gz"))
    print("wrote", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
