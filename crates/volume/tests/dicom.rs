//! DICOM series against dcm2niix: pydicom-written CT series in six transfer syntaxes and an
//! enhanced multi-frame CT (`tools/dicom_fixtures.py`) read with the geometry and values dcm2niix
//! gives; the series-level errors a scanner export produces; DICOM-SEG written and read back, and
//! a SEG written by highdicom read onto its source.

use repux_volume::dicom::seg::{read_seg, write_seg, Algorithm, Segment};
use repux_volume::dicom::{list_series, read_series, source_series};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dicom")
}

fn inverse3(m: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    let mut r = [[0.0; 3]; 3];
    for (i, row) in r.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            let (a, b) = ((j + 1) % 3, (j + 2) % 3);
            let (c, e) = ((i + 1) % 3, (i + 2) % 3);
            *v = (m[a][c] * m[b][e] - m[a][e] * m[b][c]) / det;
        }
    }
    r
}

#[test]
fn series_match_dcm2niix_in_geometry_and_values() {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap())
            .unwrap();
    for (name, e) in expected.as_object().unwrap() {
        let dir = fixtures().join(name);
        let l = repux_volume::read(&dir).unwrap_or_else(|err| panic!("{name}: {err}"));
        let g = &l.volume.geometry;
        let ea: Vec<Vec<f64>> = serde_json::from_value(e["affine"].clone()).unwrap();
        let theirs: Vec<Vec<Vec<f64>>> = serde_json::from_value(e["data"].clone()).unwrap();
        let mut theirs_shape = [theirs.len(), theirs[0].len(), theirs[0][0].len()];
        theirs_shape.sort();
        let mut ours_shape = g.shape;
        ours_shape.sort();
        assert_eq!(
            ours_shape, theirs_shape,
            "{name}: the same voxel count per axis"
        );
        let per_frame: Option<(_, Vec<Vec<Vec<f64>>>)> = e.get("frames").map(|f| {
            (
                source_series(&dir, None).unwrap(),
                serde_json::from_value(f.clone()).unwrap(),
            )
        });
        let m = [0, 1, 2].map(|r| [ea[r][0], ea[r][1], ea[r][2]]);
        let inv = inverse3(m);
        let [d, h, w] = g.shape;
        let mut checked = 0;
        for i in 0..d {
            for j in 0..h {
                for k in 0..w {
                    let a = &g.affine;
                    let world: Vec<f64> = (0..3)
                        .map(|r| {
                            a[r][0] * i as f64 + a[r][1] * j as f64 + a[r][2] * k as f64 + a[r][3]
                                - ea[r][3]
                        })
                        .collect();
                    let idx: Vec<f64> = (0..3)
                        .map(|r| inv[r][0] * world[0] + inv[r][1] * world[1] + inv[r][2] * world[2])
                        .collect();
                    let near: Vec<usize> = idx.iter().map(|v| v.round() as usize).collect();
                    // dcm2niix's voxel at the same world point, within 1e-4 mm (its affine is
                    // float32 in the NIfTI header: a few µm over 100 mm).
                    let miss: f64 = (0..3)
                        .map(|r| {
                            (0..3)
                                .map(|c| m[r][c] * (idx[c] - near[c] as f64))
                                .sum::<f64>()
                                .powi(2)
                        })
                        .sum::<f64>()
                        .sqrt();
                    assert!(
                        miss < 1e-4,
                        "{name}: voxel ({i}, {j}, {k}) is {miss} mm off dcm2niix's grid"
                    );
                    let ours = l.volume.data[(i * h + j) * w + k] as f64;
                    let v = match &per_frame {
                        // Column i, row j of the frame at k (see the fixture script on why).
                        Some((src, frames)) => {
                            let f = src.frames[k].frame_number.unwrap() - 1;
                            frames[f][j][i]
                        }
                        None => theirs[near[0]][near[1]][near[2]],
                    };
                    assert_eq!(ours, v, "{name}: value at ({i}, {j}, {k})");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, d * h * w);
    }
    let names: Vec<&String> = expected.as_object().unwrap().keys().collect();
    assert_eq!(names.len(), 7, "{names:?}");
}

#[test]
fn enhanced_multi_frame_frames_come_in_spatial_order() {
    let src = source_series(&fixtures().join("enhanced"), None).unwrap();
    assert_eq!(src.frames.len(), 5);
    // Stored as frames 2, 0, 4, 1, 3 in space: read back in space order with their numbers.
    let numbers: Vec<Option<usize>> = src.frames.iter().map(|f| f.frame_number).collect();
    assert_eq!(numbers, [2, 4, 1, 5, 3].map(Some));
}

#[test]
fn jpeg_ls_is_a_clear_error_naming_the_file_and_syntax() {
    let dir = fixtures().join("../dicom_errors/jpeg_ls");
    let e = repux_volume::read(&dir).unwrap_err().to_string();
    assert!(
        e.contains(".dcm") && e.contains("JPEG-LS") && e.contains("cannot decode"),
        "{e}"
    );
}

/// Labels in repux's layout (column-major x, then row y, then slice k) from random numbers.
fn random_labels(n: usize, classes: u16, seed: u64) -> Vec<u16> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) % classes as u64) as u16
        })
        .collect()
}

fn algo() -> Algorithm {
    Algorithm {
        name: "repux-test".into(),
        version: "0".into(),
    }
}

#[test]
fn dicom_seg_round_trips_on_single_and_multi_frame_sources() {
    let d = tempfile::tempdir().unwrap();
    for name in ["explicit_le", "enhanced", "jpeg2000"] {
        let src = source_series(&fixtures().join(name), None).unwrap();
        let [x, y, z] = src.geometry.shape;
        let mut labels = random_labels(x * y * z, 4, 11);
        // Label 3 is never predicted: its segment is described but has no frames. Slice 1 is empty.
        labels.iter_mut().for_each(|v| *v %= 3);
        for i in 0..x {
            for j in 0..y {
                labels[(i * y + j) * z + 1] = 0;
            }
        }
        let segments = vec![
            Segment::named(1, "liver"),
            Segment::named(2, "kidney_right"),
            Segment::named(3, "pancreas tumour"),
        ];
        let out = d.path().join(format!("{name}.dcm"));
        write_seg(&out, &src, &labels, &segments, &algo()).unwrap();
        let back = read_seg(&out, &src).unwrap();
        assert_eq!(
            back.labels, labels,
            "{name}: the same label map on the source grid"
        );
        assert_eq!(back.segments.len(), 3);
        assert_eq!(back.segments[&2], "kidney_right");
        if let Ok(dir) = std::env::var("REPUX_SEG_CHECK_DIR") {
            // Kept for tools/check_dicom_seg.py (highdicom reads it; .ci/run runs it).
            let keep = Path::new(&dir).join(name);
            std::fs::create_dir_all(&keep).unwrap();
            std::fs::copy(&out, keep.join("seg.dcm")).unwrap();
            let expected = serde_json::json!({
                "source": fixtures().join(name),
                "shape": [x, y, z],
                "labels": labels,
                "segments": {"1": "liver", "2": "kidney_right", "3": "pancreas tumour"},
            });
            std::fs::write(keep.join("expected.json"), expected.to_string()).unwrap();
        }
    }
}

#[test]
fn a_seg_written_by_highdicom_reads_onto_its_source() {
    let fx = fixtures().join("..");
    let e: Value =
        serde_json::from_str(&std::fs::read_to_string(fx.join("seg_highdicom.json")).unwrap())
            .unwrap();
    let src = source_series(&fx.join(e["series"].as_str().unwrap()), None).unwrap();
    let theirs: Vec<Vec<Vec<u16>>> = serde_json::from_value(e["labels"].clone()).unwrap();
    let back = read_seg(&fx.join("seg_highdicom.dcm"), &src).unwrap();
    let [x, y, z] = src.geometry.shape;
    for (k, slice) in theirs.iter().enumerate() {
        for (j, row) in slice.iter().enumerate() {
            for (i, &v) in row.iter().enumerate() {
                assert_eq!(
                    back.labels[(i * y + j) * z + k],
                    v,
                    "at column {i}, row {j}, slice {k}"
                );
            }
        }
    }
    assert_eq!(back.segments[&1], "liver");
    assert_eq!(back.segments[&2], "right kidney");
    assert_eq!(back.labels.len(), x * y * z);
}

#[test]
fn dicom_seg_refuses_what_it_cannot_describe() {
    let d = tempfile::tempdir().unwrap();
    let src = source_series(&fixtures().join("explicit_le"), None).unwrap();
    let [x, y, z] = src.geometry.shape;
    let labels = random_labels(x * y * z, 3, 5);
    let out = d.path().join("x.dcm");
    let e = write_seg(&out, &src, &labels, &[Segment::named(1, "liver")], &algo())
        .unwrap_err()
        .to_string();
    assert!(e.contains("label 2 has no segment"), "{e}");
    let e = write_seg(
        &out,
        &src,
        &labels[1..],
        &[Segment::named(1, "liver")],
        &algo(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("labels for the source series"), "{e}");
    assert!(!out.exists(), "nothing half-written");
    // A SEG over another series' grid.
    let other = source_series(&fixtures().join("jpeg2000"), None).unwrap();
    write_seg(
        &out,
        &src,
        &labels,
        &[Segment::named(1, "a"), Segment::named(2, "b")],
        &algo(),
    )
    .unwrap();
    let e = read_seg(&out, &other).unwrap_err().to_string();
    assert!(e.contains("pixel frames, but the source series has"), "{e}");
    // Not a SEG at all.
    let e = read_seg(&fixtures().join("explicit_le/IM0000.dcm"), &src)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a DICOM Segmentation"), "{e}");
}

#[test]
fn a_seg_whose_segment_has_no_label_is_refused() {
    use dicom_core::{DataElement, VR};
    use dicom_dictionary_std::tags;
    use dicom_object::InMemDicomObject;
    let d = tempfile::tempdir().unwrap();
    let src = source_series(&fixtures().join("explicit_le"), None).unwrap();
    let [x, y, z] = src.geometry.shape;
    let labels = random_labels(x * y * z, 3, 9);
    let out = d.path().join("x.dcm");
    let segs = [Segment::named(1, "liver"), Segment::named(2, "spleen")];
    write_seg(&out, &src, &labels, &segs, &algo()).unwrap();
    assert_eq!(read_seg(&out, &src).unwrap().segments[&2], "spleen");
    // Segment 2 loses its SegmentLabel (Type 1), as a hand-edited or broken writer's SEG might.
    let mut obj = dicom_object::open_file(&out).unwrap();
    let seq = obj.take_element(tags::SEGMENT_SEQUENCE).unwrap();
    let mut items: Vec<InMemDicomObject> = seq.items().unwrap().to_vec();
    assert!(items[1].remove_element(tags::SEGMENT_LABEL));
    obj.put(DataElement::new(
        tags::SEGMENT_SEQUENCE,
        VR::SQ,
        dicom_core::value::DataSetSequence::from(items),
    ));
    let bad = d.path().join("no_label.dcm");
    obj.write_to_file(&bad).unwrap();
    let e = read_seg(&bad, &src).unwrap_err().to_string();
    assert!(e.contains("segment 2 has no SegmentLabel"), "{e}");
    assert!(e.contains("no_label.dcm"), "the error names the file: {e}");
}

fn copy_series(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

#[test]
fn folders_with_several_series_extra_files_and_broken_series() {
    let d = tempfile::tempdir().unwrap();
    // Two series in nested folders plus a file that is not DICOM.
    copy_series(&fixtures().join("explicit_le"), &d.path().join("study/a"));
    copy_series(&fixtures().join("rle"), &d.path().join("study/b"));
    std::fs::write(d.path().join("study/README.txt"), "not DICOM").unwrap();
    let series = list_series(d.path()).unwrap();
    assert_eq!(series.len(), 2);
    assert!(series.iter().all(|s| s.files.len() == 5));
    let e = repux_volume::read(d.path()).unwrap_err().to_string();
    assert!(e.contains("2 series") && e.contains(&series[0].uid), "{e}");
    let one = read_series(d.path(), Some(&series[1].uid)).unwrap();
    assert_eq!(one.volume.geometry.shape, [8, 6, 5]);
    assert!(read_series(d.path(), Some("1.2.3"))
        .unwrap_err()
        .to_string()
        .contains("no series 1.2.3"));

    // A missing slice in the middle.
    let m = d.path().join("missing");
    copy_series(&fixtures().join("explicit_le"), &m);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&m)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    // Remove the slice at the middle position (files are shuffled: find it by position order).
    let loaded = repux_volume::read(&m).unwrap();
    assert_eq!(loaded.volume.geometry.shape[2], 5);
    let middle = {
        let mut by_pos: Vec<(f64, PathBuf)> = files
            .iter()
            .map(|f| {
                let one = tempfile::tempdir().unwrap();
                std::fs::copy(f, one.path().join("x.dcm")).unwrap();
                let v = repux_volume::read(one.path()).unwrap();
                (v.volume.geometry.affine[2][3], f.clone())
            })
            .collect();
        by_pos.sort_by(|a, b| a.0.total_cmp(&b.0));
        by_pos[2].1.clone()
    };
    std::fs::remove_file(&middle).unwrap();
    let e = repux_volume::read(&m).unwrap_err().to_string();
    assert!(e.contains("missing slice"), "{e}");

    // A duplicate slice (the same file twice under two names).
    let dup = d.path().join("dup");
    copy_series(&fixtures().join("explicit_le"), &dup);
    std::fs::copy(dup.join("IM0000.dcm"), dup.join("IM9999.dcm")).unwrap();
    let e = repux_volume::read(&dup).unwrap_err().to_string();
    assert!(e.contains("duplicate slice"), "{e}");

    // A folder without DICOM files.
    let empty = d.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("a.txt"), "x").unwrap();
    assert!(repux_volume::read(&empty)
        .unwrap_err()
        .to_string()
        .contains("no DICOM"));
}
