#!/usr/bin/env python3
"""DICOM conformance fixtures: small CT series written by pydicom in several transfer syntaxes
(GDCM's gdcmconv for the JPEG family), an enhanced multi-frame CT, what dcm2niix (the reference
converter) makes of each, and a SEG written by highdicom, for crates/volume/tests/dicom.rs.

    pip install pydicom numpy nibabel highdicom; apt-get install dcm2niix libgdcm-tools
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


def series(folder, syntax, *, slope=1.0, intercept=-1024.0, oblique=True, seed=0, shuffle=True,
           rows=ROWS, cols=COLS):
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    study, uid, frame_of_reference = generate_uid(), generate_uid(), generate_uid()
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
        stored = rng.integers(0, 3000, size=(rows, cols)).astype(np.uint16)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "CT"
        ds.PatientID = "REPUX-FIXTURE"
        ds.PatientName = "Fixture^Series"
        ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "120000", "1", "A1"
        ds.ReferringPhysicianName = ""
        ds.Manufacturer = "repux fixtures"
        ds.StudyInstanceUID = study
        ds.FrameOfReferenceUID = frame_of_reference
        ds.SeriesInstanceUID = uid
        ds.SeriesDescription = os.path.basename(folder)
        ds.SeriesNumber = 1
        ds.InstanceNumber = int(k) + 1
        ds.ImageOrientationPatient = [float(x) for x in np.concatenate([row_dir, col_dir])]
        ds.ImagePositionPatient = [float(x) for x in origin + normal * step * k]
        ds.PixelSpacing = list(spacing)
        ds.SliceThickness = 3.0  # deliberately not the step: repux measures the step
        ds.Rows, ds.Columns = rows, cols
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


def gdcm(folder, flag):
    """Recompresses every file of `folder` in place with gdcmconv (--jpeg: JPEG lossless SV1,
    --j2k: JPEG 2000 lossless, --jpegls: JPEG-LS lossless)."""
    for name in sorted(os.listdir(folder)):
        f = os.path.join(folder, name)
        subprocess.run(["gdcmconv", flag, f, f], check=True, capture_output=True)


def enhanced(path, *, seed):
    """An Enhanced CT object: 5 frames, geometry in the functional groups (orientation and pixel
    measures shared, position and rescale per frame), frames stored out of spatial order."""
    rng = np.random.default_rng(seed)
    a = 0.15
    row_dir = np.array([np.cos(a), 0.0, -np.sin(a)])
    col_dir = np.array([0.0, 1.0, 0.0])
    normal = np.cross(row_dir, col_dir)
    origin = np.array([30.0, -60.0, -20.0])
    step = 1.25
    order = [2, 0, 4, 1, 3]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.PatientID = "REPUX-FIXTURE"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.SeriesNumber = 3
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.ContentDate, ds.ContentTime, ds.AcquisitionDateTime = "20260101", "120000", "20260101120000"
    ds.Rows, ds.Columns = ROWS, COLS
    ds.NumberOfFrames = len(order)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1
    shared = pydicom.Dataset()
    po = pydicom.Dataset()
    po.ImageOrientationPatient = [float(x) for x in np.concatenate([row_dir, col_dir])]
    pm = pydicom.Dataset()
    pm.PixelSpacing = [0.8, 0.7]
    pm.SliceThickness = 1.25
    shared.PlaneOrientationSequence = [po]
    shared.PixelMeasuresSequence = [pm]
    ds.SharedFunctionalGroupsSequence = [shared]
    frames, pixels = [], []
    for n, k in enumerate(order):
        f = pydicom.Dataset()
        pp = pydicom.Dataset()
        pp.ImagePositionPatient = [float(x) for x in origin + normal * step * k]
        f.PlanePositionSequence = [pp]
        pv = pydicom.Dataset()
        pv.RescaleSlope, pv.RescaleIntercept, pv.RescaleType = 1.0, -1024.0 + k, "HU"
        f.PixelValueTransformationSequence = [pv]
        fc = pydicom.Dataset()
        fc.InStackPositionNumber = k + 1
        fc.StackID = "1"
        f.FrameContentSequence = [fc]
        frames.append(f)
        pixels.append(rng.integers(-500, 2500, size=(ROWS, COLS)).astype(np.int16))
    ds.PerFrameFunctionalGroupsSequence = frames
    ds.PixelData = np.stack(pixels).tobytes()
    ds.save_as(path, enforce_file_format=True)


def highdicom_seg(series_folder, path):
    """A binary SEG by highdicom over the series in `series_folder`: label 1 (liver) and label 2
    (a right kidney) on chosen pixels; returns the label map in repux's layout per source file
    (file name → rows × columns list)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    sources = [pydicom.dcmread(os.path.join(series_folder, f)) for f in sorted(os.listdir(series_folder))]
    sources.sort(key=lambda d: float(np.dot(d.ImagePositionPatient, np.cross(
        np.array(d.ImageOrientationPatient[:3], float), np.array(d.ImageOrientationPatient[3:], float)))))
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 3, size=(len(sources), ROWS, COLS)).astype(np.uint8)
    labels[0] = 0  # an empty slice: highdicom leaves its frames out
    algo = hd.AlgorithmIdentificationSequence(
        name="fixture", version="1", family=codes.cid7162.ArtificialIntelligence)
    descs = [
        hd.seg.SegmentDescription(
            segment_number=1, segment_label="liver",
            segmented_property_category=codes.SCT.Organ, segmented_property_type=codes.SCT.Liver,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algo),
        hd.seg.SegmentDescription(
            segment_number=2, segment_label="right kidney",
            segmented_property_category=codes.SCT.Organ, segmented_property_type=codes.SCT.Kidney,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algo),
    ]
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=labels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descs, series_instance_uid=generate_uid(), series_number=100,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="fixture",
        manufacturer_model_name="fixture", software_versions="1", device_serial_number="1")
    seg.save_as(path)
    return labels.tolist()


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
        "jpeg_lossless": dict(syntax=ExplicitVRLittleEndian, seed=5, gdcm="--jpeg"),
        # OpenJPEG cannot encode images smaller than its 6 resolution levels need (32 px).
        "jpeg2000": dict(syntax=ExplicitVRLittleEndian, seed=6, gdcm="--j2k", rows=32, cols=40),
    }
    expected = {}
    for name, kw in cases.items():
        folder = os.path.join(OUT, name)
        flag = kw.pop("gdcm", None)
        series(folder, **kw)
        if flag:
            gdcm(folder, flag)
        if kw["syntax"] == DeflatedExplicitVRLittleEndian:
            # dcm2niix cannot inflate: its reference is the same series, explicit VR LE.
            with tempfile.TemporaryDirectory() as twin:
                series(twin, **{**kw, "syntax": ExplicitVRLittleEndian})
                affine, data = dcm2niix(twin)
        else:
            affine, data = dcm2niix(folder)
        expected[name] = {"affine": affine, "data": data}
    os.makedirs(os.path.join(OUT, "enhanced"))
    enhanced(os.path.join(OUT, "enhanced", "enhanced_ct.dcm"), seed=8)
    affine, data = dcm2niix(os.path.join(OUT, "enhanced"))
    # dcm2niix (v1.0.20220720) applies the first frame's RescaleIntercept to every frame; the
    # per-frame values, as PS3.3 C.7.6.16.2.9 defines them, come from pydicom: frame f's stored
    # values × its slope + its intercept (rows × columns per frame, by frame number - 1).
    ds = pydicom.dcmread(os.path.join(OUT, "enhanced", "enhanced_ct.dcm"))
    frames = []
    for f, fg in enumerate(ds.PerFrameFunctionalGroupsSequence):
        pv = fg.PixelValueTransformationSequence[0]
        frames.append((ds.pixel_array[f] * float(pv.RescaleSlope) + float(pv.RescaleIntercept)).tolist())
    expected["enhanced"] = {"affine": affine, "data": data, "frames": frames}
    with open(os.path.join(OUT, "expected.json"), "w") as fh:
        json.dump(expected, fh)
    # Not a series of its own: JPEG-LS (no pure-Rust decoder) for the unsupported-syntax error.
    jls = os.path.join(OUT, "..", "dicom_errors", "jpeg_ls")
    if os.path.isdir(jls):
        shutil.rmtree(jls)
    series(jls, syntax=ExplicitVRLittleEndian, seed=9)
    gdcm(jls, "--jpegls")
    seg_labels = highdicom_seg(os.path.join(OUT, "explicit_le"), os.path.join(OUT, "..", "seg_highdicom.dcm"))
    with open(os.path.join(OUT, "..", "seg_highdicom.json"), "w") as fh:
        json.dump({"series": "dicom/explicit_le", "labels": seg_labels}, fh)
    print("wrote", len(expected), "series, a JPEG-LS series and a highdicom SEG under", os.path.normpath(os.path.join(OUT, "..")))


if __name__ == "__main__":
    main()
