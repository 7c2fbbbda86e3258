//! DICOM series against dcm2niix: pydicom-written CT series in four transfer syntaxes
//! (`tools/dicom_fixtures.py`) read with the geometry and values dcm2niix gives, and the
//! series-level errors a scanner export produces.

use repux_volume::dicom::{list_series, read_series};
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
        assert_eq!(g.shape, [8, 6, 5], "{name}: columns × rows × slices");
        let ea: Vec<Vec<f64>> = serde_json::from_value(e["affine"].clone()).unwrap();
        let theirs: Vec<Vec<Vec<f64>>> = serde_json::from_value(e["data"].clone()).unwrap();
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
                    let v = theirs[near[0]][near[1]][near[2]];
                    assert_eq!(ours, v, "{name}: value at ({i}, {j}, {k})");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 240);
    }
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
