#!/usr/bin/env python3
"""Reads repux's DICOM-SEG objects with highdicom (the reference SEG library) and checks that
highdicom sees the label map repux meant, on the source images repux referenced.

    pip install highdicom
    REPUX_SEG_CHECK_DIR=/tmp/seg cargo test --release -p repux-volume --test dicom dicom_seg
    python3 tools/check_dicom_seg.py /tmp/seg

Each sub-folder holds seg.dcm and expected.json ({source, shape: [columns, rows, slices],
labels in repux's order (column, row, slice), segments: number -> label}). For every source image
(single-frame file, or frame of an enhanced multi-frame object), highdicom's pixels for it,
segments combined into one label image, must equal repux's labels at that slice; segment labels,
codes and the references must be present. Exits non-zero on the first difference.
"""
import json
import os
import sys

import highdicom as hd
import numpy as np
import pydicom


def source_images(folder):
    """(SOP instance UID, frame number or None, position along the normal) of every source image."""
    out = []
    for name in sorted(os.listdir(folder)):
        ds = pydicom.dcmread(os.path.join(folder, name))
        if "PerFrameFunctionalGroupsSequence" in ds:
            ori = ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient
            normal = np.cross(np.array(ori[:3], float), np.array(ori[3:], float))
            for f, fg in enumerate(ds.PerFrameFunctionalGroupsSequence):
                pos = np.array(fg.PlanePositionSequence[0].ImagePositionPatient, float)
                out.append((ds.SOPInstanceUID, f + 1, float(pos @ normal)))
        else:
            ori = ds.ImageOrientationPatient
            normal = np.cross(np.array(ori[:3], float), np.array(ori[3:], float))
            out.append((ds.SOPInstanceUID, None, float(np.array(ds.ImagePositionPatient, float) @ normal)))
    out.sort(key=lambda t: t[2])
    return out


def check(case):
    with open(os.path.join(case, "expected.json")) as fh:
        e = json.load(fh)
    cols, rows, slices = e["shape"]
    labels = np.array(e["labels"], dtype=np.uint16).reshape(cols, rows, slices)
    seg = hd.seg.segread(os.path.join(case, "seg.dcm"))
    assert seg.SegmentationType == "BINARY", seg.SegmentationType
    numbers = [int(s.SegmentNumber) for s in seg.SegmentSequence]
    names = {str(int(s.SegmentNumber)): s.SegmentLabel for s in seg.SegmentSequence}
    assert names == e["segments"], (names, e["segments"])
    for s in seg.SegmentSequence:
        desc = seg.get_segment_description(int(s.SegmentNumber))
        assert desc.segmented_property_category.scheme_designator == "SCT"
        assert desc.segmented_property_type.scheme_designator == "SCT"
        assert desc.algorithm_type == hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
        assert desc.algorithm_identification is not None
    images = source_images(e["source"])
    assert len(images) == slices, (len(images), slices)
    for k, (uid, frame, _) in enumerate(images):
        if frame is None:
            px = seg.get_pixels_by_source_instance(
                source_sop_instance_uids=[uid], segment_numbers=numbers, combine_segments=True,
                assert_missing_frames_are_empty=True)[0]
        else:
            px = seg.get_pixels_by_source_frame(
                source_sop_instance_uid=uid, source_frame_numbers=[frame], segment_numbers=numbers,
                combine_segments=True, assert_missing_frames_are_empty=True)[0]
        want = labels[:, :, k].T  # rows × columns
        if not np.array_equal(px, want):
            raise SystemExit(f"{case}: slice {k} ({uid} frame {frame}) differs:\n{px}\n{want}")
    print(f"{case}: {len(images)} source images, {len(numbers)} segments, highdicom agrees")


def main():
    root = sys.argv[1]
    cases = sorted(d for d in os.listdir(root) if os.path.isfile(os.path.join(root, d, "seg.dcm")))
    if not cases:
        raise SystemExit(f"{root}: no SEG to check")
    for c in cases:
        check(os.path.join(root, c))


if __name__ == "__main__":
    main()
