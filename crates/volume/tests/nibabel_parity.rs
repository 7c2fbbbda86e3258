//! `repux_volume::read` agrees with nibabel (and pynrrd for NRRD) on shape, dtype, spacing,
//! affine, orientation and value statistics, for real files from nibabel's and nilearn's test
//! data and for edge cases written by `tools/nibabel_fixtures.py` (which also wrote
//! `fixtures/expected.json`).

use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn close(a: f64, b: f64, rel: f64, abs: f64) -> bool {
    (a.is_nan() && b.is_nan()) || (a - b).abs() <= abs + rel * b.abs()
}

#[test]
fn every_fixture_matches_nibabel() {
    let text = std::fs::read_to_string(fixtures().join("expected.json"))
        .expect("fixtures/expected.json (run tools/nibabel_fixtures.py)");
    let exp: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&text).expect("valid JSON");
    assert!(
        exp.len() >= 20,
        "expected the full fixture set, found {}",
        exp.len()
    );
    let mut failures = Vec::new();
    for (name, e) in &exp {
        let l = match repux_volume::read(&fixtures().join(name)) {
            Ok(l) => l,
            Err(err) => {
                failures.push(format!("{name}: {err}"));
                continue;
            }
        };
        let g = &l.volume.geometry;
        let shape: Vec<usize> = serde_json::from_value(e["shape"].clone()).unwrap();
        if l.shape != shape {
            failures.push(format!("{name}: shape {:?} vs nibabel {shape:?}", l.shape));
        }
        if l.datatype.name() != e["datatype"].as_str().unwrap() {
            failures.push(format!(
                "{name}: datatype {} vs {}",
                l.datatype.name(),
                e["datatype"]
            ));
        }
        let spacing: Vec<f64> = serde_json::from_value(e["spacing"].clone()).unwrap();
        assert_eq!(
            spacing.len(),
            3,
            "{name}: nibabel zooms must have 3 entries"
        );
        for (&ours, &theirs) in g.spacing.iter().zip(&spacing) {
            // Tolerance: nibabel's zooms are float32 in NIfTI-1; ours are the same values.
            if !close(ours, theirs, 1e-6, 1e-9) {
                failures.push(format!("{name}: spacing {:?} vs {spacing:?}", g.spacing));
            }
        }
        let aff: Vec<Vec<f64>> = serde_json::from_value(e["affine"].clone()).unwrap();
        assert_eq!(aff.len(), 4, "{name}: nibabel affine must be 4 × 4");
        for (r, (ours, theirs)) in g.affine.iter().zip(&aff).enumerate() {
            for (c, (&a, &b)) in ours.iter().zip(theirs).enumerate() {
                // sform: exact; qform: both sides evaluate in float32, allow a few ulps of 100 mm.
                if !close(a, b, 0.0, 2e-5) {
                    failures.push(format!("{name}: affine[{r}][{c}] {a} vs {b}"));
                }
            }
        }
        if g.orientation() != e["orientation"].as_str().unwrap() {
            failures.push(format!(
                "{name}: orientation {} vs {}",
                g.orientation(),
                e["orientation"]
            ));
        }
        let s = &l.stats;
        for (k, ours) in [
            ("min", s.min),
            ("max", s.max),
            ("mean", s.mean),
            ("sum", s.sum),
        ] {
            let theirs = e[k].as_f64().unwrap_or(f64::NAN);
            // Statistics are accumulated in f64 from the same values: differences are
            // summation order only (numpy sums pairwise).
            if !close(ours, theirs, 1e-9, 1e-9) {
                failures.push(format!("{name}: {k} {ours} vs {theirs}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn roundtrip_write_read_keeps_geometry_and_values() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "qform_only_oblique.nii",
        "anatomical.nii",
        "scaled_u8_lps.nii.gz",
        "nifti2_4d.nii",
        "lps_gzip.nrrd",
    ] {
        let v = repux_volume::read_volume(&fixtures().join(name)).unwrap();
        for ext in ["nii.gz", "nii"] {
            let out = dir.path().join(format!("{name}.out.{ext}"));
            repux_volume::nifti::write_nifti(
                &out,
                &v.geometry,
                v.channels,
                &v.data,
                repux_volume::DataType::F32,
            )
            .unwrap();
            let back = repux_volume::read_volume(&out).unwrap();
            assert_eq!(back.data, v.data, "{name}");
            assert_eq!(back.geometry.shape, v.geometry.shape);
            for r in 0..4 {
                for c in 0..4 {
                    // sform is stored as float32
                    assert!(
                        close(
                            back.geometry.affine[r][c],
                            v.geometry.affine[r][c],
                            1e-6,
                            1e-5
                        ),
                        "{name} affine"
                    );
                }
            }
            assert_eq!(back.orientation(), v.orientation());
        }
    }
}

#[test]
fn reorient_to_ras_and_back_is_exact_on_real_files() {
    for name in [
        "anatomical.nii",
        "qform_only_oblique.nii",
        "lps_raw.nrrd",
        "functional.nii",
    ] {
        let v = repux_volume::read_volume(&fixtures().join(name)).unwrap();
        let (ras, ro) = v.reorient("RAS").unwrap();
        assert_eq!(ras.orientation(), "RAS", "{name}");
        let back = ras.apply(&ro.inverse());
        assert_eq!(back.data, v.data, "{name}");
        assert_eq!(back.geometry.shape, v.geometry.shape);
        // The voxel at RAS index (1,2,2) holds the value of the original voxel at the same world
        // position.
        let w = ras.geometry.world([1.0, 2.0, 2.0]);
        let idx = (0..v.geometry.voxels())
            .find(|&n| {
                let [_, h, wd] = v.geometry.shape;
                let p = v.geometry.world([
                    (n / (h * wd)) as f64,
                    ((n / wd) % h) as f64,
                    (n % wd) as f64,
                ]);
                (0..3).all(|r| (p[r] - w[r]).abs() < 1e-6)
            })
            .unwrap_or_else(|| panic!("{name}: world point {w:?} not found in the original grid"));
        assert_eq!(v.data[idx], ras.data[ras.index(1, 2, 2)], "{name}");
    }
}
