//! End-to-end: the real `repux` binary on real files.

mod common;

use common::{repux, repux_ok, stderr};
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../volume/tests/fixtures")
}

#[test]
fn info_json_has_exactly_the_contract_keys_and_nibabel_values() {
    let exp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap())
            .unwrap();
    for name in ["anatomical.nii", "example_nifti2.nii.gz", "lps_gzip.nrrd"] {
        let o = repux(&["info", "--json", fixtures().join(name).to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        let mut want = vec![
            "affine",
            "datatype",
            "max",
            "mean",
            "min",
            "orientation",
            "shape",
            "spacing",
            "sum",
        ];
        want.sort();
        let mut got: Vec<&str> = keys.iter().map(|k| k.as_str()).collect();
        got.sort();
        assert_eq!(got, want);
        let e = &exp[name];
        assert_eq!(v["shape"], e["shape"]);
        assert_eq!(v["datatype"], e["datatype"]);
        assert_eq!(v["orientation"], e["orientation"]);
        for k in ["min", "max", "mean", "sum"] {
            let (a, b) = (v[k].as_f64().unwrap(), e[k].as_f64().unwrap());
            assert!(
                (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                "{name} {k}: {a} vs {b}"
            );
        }
        assert_eq!(v["affine"].as_array().unwrap().len(), 4);
    }
}

#[test]
fn info_text_output() {
    let o = repux(&[
        "info",
        fixtures().join("scaled_u8_lps.nii.gz").to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.contains("uint8") && s.contains("LPS") && s.contains("affine"),
        "{s}"
    );
}

#[test]
fn synth_then_check_passes_and_a_broken_case_fails_with_a_named_file() {
    let d = tempfile::tempdir().unwrap();
    let ds = d.path().join("ds");
    common::synth(&ds, 3, 9);
    for f in [
        "dataset.json",
        "imagesTr/phantom_000_0000.nii.gz",
        "labelsTr/phantom_002.nii.gz",
    ] {
        assert!(ds.join(f).is_file(), "{f}");
    }
    let o = repux(&["dataset", "check", ds.to_str().unwrap()]);
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("3 cases checked, 0 problem(s)"));
    // Same seed, same bytes.
    let ds2 = d.path().join("ds2");
    common::synth(&ds2, 1, 9);
    assert_eq!(
        std::fs::read(ds.join("labelsTr/phantom_000.nii.gz")).unwrap(),
        std::fs::read(ds2.join("labelsTr/phantom_000.nii.gz")).unwrap()
    );
    // Truncate one image: check exits 1 and names it.
    let bad = ds.join("imagesTr/phantom_001_0000.nii.gz");
    let b = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, &b[..b.len() / 3]).unwrap();
    let o = repux(&["dataset", "check", ds.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("phantom_001_0000.nii.gz: gzip stream is corrupt or truncated"),
        "{out}"
    );
    let o = repux(&["dataset", "check", "--json", ds.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["cases"].as_array().unwrap().len(), 3);
}

#[test]
fn bad_inputs_give_clear_errors_not_panics() {
    let d = tempfile::tempdir().unwrap();
    let t = d.path().join("trunc.nii.gz");
    let b = std::fs::read(fixtures().join("example_nifti2.nii.gz")).unwrap();
    std::fs::write(&t, &b[..b.len() / 2]).unwrap();
    let o = repux(&["info", t.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("trunc.nii.gz") && e.contains("truncated") && !e.contains("panicked"),
        "{e}"
    );
    let o = repux(&["dataset", "check", d.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a dataset"), "{}", stderr(&o));
    let o = repux(&[
        "synth",
        "--out",
        d.path().join("z").to_str().unwrap(),
        "--cases",
        "0",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("at least 1"));
}

#[test]
fn plan_then_preprocess_then_rerun_skips() {
    let d = tempfile::tempdir().unwrap();
    let ds = d.path().join("ds");
    common::synth(&ds, 2, 4);
    let plans = d.path().join("plans.json");
    let o = repux(&[
        "plan",
        ds.to_str().unwrap(),
        "-o",
        plans.to_str().unwrap(),
        "--target-spacing",
        "1.5,1.5,3",
        "--ct-window",
        "-125,275",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plans).unwrap()).unwrap();
    for k in [
        "target_spacing",
        "patch_size",
        "batch_size",
        "normalization",
        "labels",
    ] {
        assert!(v.get(k).is_some(), "plans lack {k}");
    }
    assert_eq!(v["target_spacing"], serde_json::json!([1.5, 1.5, 3.0]));
    assert_eq!(v["labels"]["pancreas"], 4);
    assert_eq!(v["normalization"][0]["scheme"], "window");
    assert!(v["patch_size"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p.as_u64().unwrap() % 16 == 0));
    let out = d.path().join("cache");
    let o = common::preprocess(&ds, &plans, &out);
    assert!(String::from_utf8_lossy(&o.stdout).contains("2 written"));
    for f in [
        "phantom_000_image.npy",
        "phantom_000_label.npy",
        "phantom_001.json",
        "plans.json",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let o = common::preprocess(&ds, &plans, &out);
    assert!(String::from_utf8_lossy(&o.stdout).contains("2 already up to date"));
    // A broken case fails alone: the exit code says so, the other case stays cached.
    let img = ds.join("imagesTr/phantom_001_0000.nii.gz");
    let b = std::fs::read(&img).unwrap();
    std::fs::write(&img, &b[..100]).unwrap();
    let o = repux(&[
        "preprocess",
        ds.to_str().unwrap(),
        "--plans",
        plans.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.contains("failed phantom_001") && s.contains("phantom_001_0000.nii.gz"),
        "{s}"
    );
    assert!(out.join("phantom_000.json").is_file());
    let o = repux(&["plan", d.path().join("nothing").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
}

fn nn_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../nn/tests/fixtures")
        .join(name)
}

#[test]
fn model_summary_paper_counts() {
    for (preset, n) in [("paper", 65_827_829u64), ("paper-uxnet", 53_006_069)] {
        let o = repux(&["model", "summary", "--model-config", preset, "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["parameters"].as_u64(), Some(n), "{preset}");
    }
    // SwinUNETR(in 1, out 14, feature_size 48): the count MONAI 1.5.1 reports.
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("swin.json");
    std::fs::write(
        &cfg,
        r#"{"arch": "swinunetr", "feature_size": 48, "out_channels": 14}"#,
    )
    .unwrap();
    let o = repux(&[
        "model",
        "summary",
        "--model-config",
        cfg.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["parameters"].as_u64(), Some(62_187_296));
    let o = repux(&["model", "summary", "--model-config", "nonsense"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a preset"));
}

/// ‖a − b‖₂ / ‖b‖₂
fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}

#[test]
fn forward_reproduces_the_pytorch_fixtures() {
    let d = tempfile::tempdir().unwrap();
    // The SwinUNETR fixture's config in MONAI 1.5's own constructor names (no "arch").
    let mut monai: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(nn_fixture("swinunetr_w3.json")).unwrap())
            .unwrap();
    monai.remove("arch");
    for (k, v) in [
        ("patch_size", serde_json::json!(2)),
        ("spatial_dims", 3.into()),
        ("normalize", true.into()),
        ("qkv_bias", true.into()),
        ("norm_name", "instance".into()),
        ("drop_rate", 0.0.into()),
        ("attn_drop_rate", 0.0.into()),
        ("dropout_path_rate", 0.0.into()),
        ("use_checkpoint", false.into()),
    ] {
        monai.insert(k.into(), v);
    }
    let monai_cfg = d.path().join("monai_swinunetr.json");
    std::fs::write(&monai_cfg, serde_json::to_string(&monai).unwrap()).unwrap();
    for (name, config, weights) in [
        ("repux_k21", nn_fixture("repux_k21.json"), "repux_k21.pth"),
        (
            "repux_k21",
            nn_fixture("repux_k21_authors.json"),
            "repux_k21.pth",
        ),
        ("uxnet_k7", nn_fixture("uxnet_k7.json"), "uxnet_k7.pth"),
        (
            "swinunetr_w3",
            nn_fixture("swinunetr_w3.json"),
            "swinunetr_w3.pth",
        ),
        ("swinunetr_w3", monai_cfg.clone(), "swinunetr_w3.pth"),
    ] {
        let out = d.path().join(format!("{name}.npy"));
        let o = repux(&[
            "forward",
            "--model-config",
            config.to_str().unwrap(),
            "--weights",
            nn_fixture(weights).to_str().unwrap(),
            "--input",
            nn_fixture(&format!("{name}_input.npy")).to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let got = repux_volume::npy::read(&out).unwrap();
        let want = repux_volume::npy::read(&nn_fixture(&format!("{name}_logits.npy"))).unwrap();
        assert_eq!(got.shape, want.shape);
        let e = rel_l2(&got.data, &want.data);
        assert!(e <= 1e-4, "{name} ({}): relative L2 {e}", config.display());
    }
    // A side not divisible by 16 is a clear error, and nothing is written.
    let x = d.path().join("odd.npy");
    repux_volume::npy::write(
        &x,
        &[1, 1, 16, 16, 24],
        &vec![0.0; 16 * 16 * 24],
        repux_volume::npy::NpyType::F32,
    )
    .unwrap();
    let out = d.path().join("never.npy");
    let o = repux(&[
        "forward",
        "--model-config",
        nn_fixture("uxnet_k7.json").to_str().unwrap(),
        "--weights",
        nn_fixture("uxnet_k7.pth").to_str().unwrap(),
        "--input",
        x.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("multiple of 16") && stderr(&o).contains("odd.npy"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
}

#[test]
fn evaluate_writes_nnunet_summary() {
    let d = tempfile::tempdir().unwrap();
    let ds = d.path().join("ds");
    common::synth(&ds, 2, 6);
    let pred = d.path().join("pred");
    std::fs::create_dir_all(&pred).unwrap();
    // Case 0 predicted perfectly; case 1 with the pancreas removed.
    std::fs::copy(
        ds.join("labelsTr/phantom_000.nii.gz"),
        pred.join("phantom_000.nii.gz"),
    )
    .unwrap();
    let v = repux_volume::read_volume(&ds.join("labelsTr/phantom_001.nii.gz")).unwrap();
    let data: Vec<f32> = v
        .data
        .iter()
        .map(|&x| if x == 4.0 { 0.0 } else { x })
        .collect();
    repux_volume::nifti::write_labels(&pred.join("phantom_001.nii.gz"), &v.geometry, &data, 4)
        .unwrap();
    let o = repux(&[
        "evaluate",
        "--pred",
        pred.to_str().unwrap(),
        "--ref",
        ds.join("labelsTr").to_str().unwrap(),
        "--labels",
        ds.join("dataset.json").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pred.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["metric_per_case"].as_array().unwrap().len(), 2);
    assert_eq!(s["metric_per_case"][0]["metrics"]["1"]["Dice"], 1.0);
    assert_eq!(s["metric_per_case"][1]["metrics"]["4"]["Dice"], 0.0);
    assert!(
        s["metric_per_case"][1]["metrics"]["4"]["HD95"].is_null(),
        "∞ is written as null"
    );
    // Foreground mean: classes 1–3 perfect, pancreas mean (1 + 0)/2 → (3 + 0.5)/4.
    let fg = s["foreground_mean"]["Dice"].as_f64().unwrap();
    assert!((fg - 0.875).abs() < 1e-12, "{fg}");
    for f in ["summary.csv", "summary.md"] {
        assert!(pred.join(f).is_file());
    }
    // The QC sheet: two tiles side by side over the images, and a legend of the four organs.
    let qc_dir = d.path().join("qc");
    let qc_args = |images: &Path| {
        repux(&[
            "evaluate",
            "--pred",
            pred.to_str().unwrap(),
            "--ref",
            ds.join("labelsTr").to_str().unwrap(),
            "--labels",
            ds.join("dataset.json").to_str().unwrap(),
            "-o",
            qc_dir.to_str().unwrap(),
            "--qc",
            "--images",
            images.to_str().unwrap(),
        ])
    };
    let o = qc_args(&ds.join("imagesTr"));
    assert!(o.status.success(), "{}", stderr(&o));
    let (w, h) = png_size(&qc_dir.join("qc.png"));
    assert_eq!((w, h), (560, 40 + 278 + 2 * 24 + 12));
    // An image folder without the cases is an error naming the case.
    let empty = d.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = qc_args(&empty);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no image for case phantom_000"),
        "{}",
        stderr(&o)
    );
    // A prediction on another grid is a clear error naming the file.
    let g = repux_volume::Geometry {
        shape: [2, 2, 2],
        ..v.geometry.clone()
    };
    repux_volume::nifti::write_labels(&pred.join("phantom_001.nii.gz"), &g, &[0.0; 8], 4).unwrap();
    let o = repux(&[
        "evaluate",
        "--pred",
        pred.to_str().unwrap(),
        "--ref",
        ds.join("labelsTr").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("phantom_001.nii.gz")
            && stderr(&o).contains("does not match the reference"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn predict_writes_native_grids_and_survives_a_broken_file() {
    let d = tempfile::tempdir().unwrap();
    let ds = d.path().join("ds");
    common::synth(&ds, 4, 5);
    let plans = d.path().join("plans.json");
    common::plan(&ds, &plans, "3,3,4", "32,32,32", &[]);
    let model = d.path().join("model");
    common::import_model("micro", &plans, &model);
    // Inputs: the four phantom images plus one truncated file.
    let input = d.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    for i in 0..4 {
        std::fs::copy(
            ds.join(format!("imagesTr/phantom_{i:03}_0000.nii.gz")),
            input.join(format!("phantom_{i:03}_0000.nii.gz")),
        )
        .unwrap();
    }
    std::fs::write(input.join("broken_0000.nii.gz"), b"\x1f\x8b\x08\x00garbage").unwrap();
    let out = d.path().join("out");
    let o = repux(&[
        "predict",
        "-i",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "-m",
        model.to_str().unwrap(),
        "--tile-batch",
        "2",
        "--largest-component",
        "--probabilities",
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a failed case makes the exit code non-zero"
    );
    assert!(
        stderr(&o).contains("case broken") && stderr(&o).contains("broken_0000.nii.gz"),
        "{}",
        stderr(&o)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("4 of 5 cases predicted"));
    let mut orients = std::collections::BTreeSet::new();
    for i in 0..4 {
        let img =
            repux_volume::read_volume(&input.join(format!("phantom_{i:03}_0000.nii.gz"))).unwrap();
        let pred = repux_volume::read(&out.join(format!("phantom_{i:03}.nii.gz"))).unwrap();
        orients.insert(img.orientation());
        assert_eq!(
            pred.volume.geometry.shape, img.geometry.shape,
            "case {i}: shape of the input"
        );
        assert!(
            pred.volume.geometry.max_affine_diff(&img.geometry) < 1e-4,
            "case {i}: affine of the input"
        );
        assert_eq!(pred.datatype, repux_volume::DataType::U8);
        assert!(pred.volume.data.iter().all(|&v| (0.0..5.0).contains(&v)));
        let probs = repux_volume::npy::read(&out.join(format!("phantom_{i:03}_probabilities.npy")))
            .unwrap();
        let [a, b, c] = img.geometry.shape;
        assert_eq!(probs.shape, vec![5, a, b, c]);
    }
    assert!(
        orients.contains("RAS") && orients.contains("LPS"),
        "{orients:?}"
    );
    // The predictions evaluate against the references.
    let o = repux(&[
        "evaluate",
        "--pred",
        out.to_str().unwrap(),
        "--ref",
        ds.join("labelsTr").to_str().unwrap(),
        "--labels",
        plans.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.join("summary.json").is_file());
    // MetaImage in and out: the same case as .mha predicts the same labels on the same grid.
    let src = repux_volume::read(&input.join("phantom_001_0000.nii.gz")).unwrap();
    let mha_in = d.path().join("mha_in");
    std::fs::create_dir_all(&mha_in).unwrap();
    repux_volume::write_image(
        &mha_in.join("phantom_001_0000.mha"),
        &src.volume.geometry,
        1,
        &src.volume.data,
        src.datatype,
    )
    .unwrap();
    let mha_out = d.path().join("mha_out");
    let o = repux(&[
        "predict",
        "-i",
        mha_in.to_str().unwrap(),
        "-o",
        mha_out.to_str().unwrap(),
        "-m",
        model.to_str().unwrap(),
        "--tile-batch",
        "2",
        "--largest-component",
        "--output-format",
        "mha",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let a = repux_volume::read_volume(&mha_out.join("phantom_001.mha")).unwrap();
    let b = repux_volume::read_volume(&out.join("phantom_001.nii.gz")).unwrap();
    assert_eq!(a.geometry.shape, b.geometry.shape);
    assert!(a.geometry.max_affine_diff(&b.geometry) < 1e-4);
    assert_eq!(
        a.data, b.data,
        "labels from the .mha input equal those from the .nii.gz"
    );
    // DICOM in: a folder with one folder per series predicts one case per series, named by
    // its folder, on the series' own grid; `info` lists the series and describes one.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../volume/tests/fixtures/dicom");
    let dcm = d.path().join("dicom");
    for s in ["explicit_le", "rle"] {
        std::fs::create_dir_all(dcm.join(s)).unwrap();
        for e in std::fs::read_dir(fixtures.join(s)).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, dcm.join(s).join(p.file_name().unwrap())).unwrap();
        }
    }
    let dcm_out = d.path().join("dicom_out");
    let o = repux(&[
        "predict",
        "-i",
        dcm.to_str().unwrap(),
        "-o",
        dcm_out.to_str().unwrap(),
        "-m",
        model.to_str().unwrap(),
        "--tta",
        "none",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for s in ["explicit_le", "rle"] {
        let src = repux_volume::read_volume(&dcm.join(s)).unwrap();
        let pred = repux_volume::read_volume(&dcm_out.join(format!("{s}.nii.gz"))).unwrap();
        assert_eq!(pred.geometry.shape, src.geometry.shape, "{s}");
        assert!(pred.geometry.max_affine_diff(&src.geometry) < 1e-4, "{s}");
    }
    // DICOM-SEG out: the same labels as the NIfTI, read back onto the source series.
    let seg_out = d.path().join("seg_out");
    let seg_args = |extra: &[&str]| {
        let mut v = vec![
            "predict",
            "-i",
            dcm.to_str().unwrap(),
            "-o",
            seg_out.to_str().unwrap(),
            "-m",
            model.to_str().unwrap(),
            "--tta",
            "none",
            "--output-type",
            "dicom-seg",
        ];
        v.extend_from_slice(extra);
        repux(&v)
    };
    let o = seg_args(&["--output-format", "mha"]);
    assert!(
        !o.status.success() && stderr(&o).contains("--output-format"),
        "{}",
        stderr(&o)
    );
    let o = seg_args(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let plans_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plans).unwrap()).unwrap();
    for s in ["explicit_le", "rle"] {
        let src = repux_volume::dicom::source_series(&dcm.join(s), None).unwrap();
        let back =
            repux_volume::dicom::seg::read_seg(&seg_out.join(format!("{s}.dcm")), &src).unwrap();
        let nifti = repux_volume::read_volume(&dcm_out.join(format!("{s}.nii.gz"))).unwrap();
        let want: Vec<u16> = nifti.data.iter().map(|&v| v as u16).collect();
        assert_eq!(back.labels, want, "{s}: the SEG holds the NIfTI's labels");
        for (name, v) in plans_json["labels"].as_object().unwrap() {
            let v = v.as_u64().unwrap() as u16;
            if v > 0 {
                assert_eq!(
                    back.segments[&v], *name,
                    "{s}: segment {v} named by the plans"
                );
            }
        }
        if let Ok(dir) = std::env::var("REPUX_SEG_CHECK_DIR") {
            // Kept for tools/check_dicom_seg.py (highdicom reads it; .ci/run runs it).
            let keep = Path::new(&dir).join(format!("cli_{s}"));
            std::fs::create_dir_all(&keep).unwrap();
            std::fs::copy(seg_out.join(format!("{s}.dcm")), keep.join("seg.dcm")).unwrap();
            let segments: serde_json::Map<String, serde_json::Value> = back
                .segments
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
                .collect();
            let expected = serde_json::json!({
                "source": fixtures.join(s),
                "shape": src.geometry.shape,
                "labels": want,
                "segments": segments,
            });
            std::fs::write(keep.join("expected.json"), expected.to_string()).unwrap();
        }
    }
    // A NIfTI input cannot become a SEG: the case fails with the reason, the others go on.
    let o = repux(&[
        "predict",
        "-i",
        input.join("phantom_000_0000.nii.gz").to_str().unwrap(),
        "-o",
        d.path().join("seg_bad").to_str().unwrap(),
        "-m",
        model.to_str().unwrap(),
        "--tta",
        "none",
        "--output-type",
        "dicom-seg",
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("needs a DICOM series"),
        "{}",
        stderr(&o)
    );
    let o = repux(&["info", dcm.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let series = v["series"].as_array().unwrap();
    assert_eq!(series.len(), 2);
    let uid = series[0]["uid"].as_str().unwrap();
    let o = repux(&["info", dcm.to_str().unwrap(), "--json", "--series", uid]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["shape"], serde_json::json!([8, 6, 5]));
    assert_eq!(
        v.as_object().unwrap().len(),
        9,
        "the same keys as for files"
    );
}

#[test]
fn overlay_writes_a_png() {
    let d = tempfile::tempdir().unwrap();
    let ds = d.path().join("ds");
    common::synth(&ds, 2, 8);
    let out = d.path().join("ov.png");
    let img = ds.join("imagesTr/phantom_000_0000.nii.gz");
    let o = repux(&[
        "overlay",
        img.to_str().unwrap(),
        ds.join("labelsTr/phantom_000.nii.gz").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--labels",
        ds.join("dataset.json").to_str().unwrap(),
        "--window=-160,240",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Three views, the tallest enlarged to at least 360 px, a legend row for the four organs.
    let (w, h) = png_size(&out);
    assert!(w > 3 * 100 && h > 360 + 34 + 26, "{w}×{h}");
    // A label from another case (another grid) is an error, and no PNG is written.
    let bad = d.path().join("bad.png");
    let o = repux(&[
        "overlay",
        img.to_str().unwrap(),
        ds.join("labelsTr/phantom_001.nii.gz").to_str().unwrap(),
        "--out",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("does not match"), "{}", stderr(&o));
    assert!(!bad.exists());
}

#[test]
fn train_with_a_config_file_stops_on_a_stop_file_and_resumes() {
    let d = tempfile::tempdir().unwrap();
    let ds = d.path().join("ds");
    common::synth(&ds, 3, 2);
    let plans = d.path().join("plans.json");
    common::plan(&ds, &plans, "4,4,4", "32,32,16", &[]);
    let cfg = d.path().join("train.toml");
    std::fs::write(&cfg, "model = \"micro\"\niterations = 6\nval_interval = 3\nlr = 0.003\nschedule = \"poly\"\naugment = \"none\"\n").unwrap();
    let out = d.path().join("model");
    // A STOP file already present: the run saves after its first iteration and exits 130.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("STOP"), b"").unwrap();
    let base = [
        "train",
        ds.to_str().unwrap(),
        "--plans",
        plans.to_str().unwrap(),
        "--fold",
        "0",
        "--out",
        out.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ];
    let o = repux(&base);
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("--resume"));
    assert!(
        !out.join("STOP").exists()
            && out
                .join("checkpoint_latest/optimizer.safetensors")
                .is_file()
    );
    let o = repux(&[&base[..], &["--resume"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    let its: Vec<u64> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["iteration"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(its, (1..=6).collect::<Vec<_>>());
    let saved: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("checkpoint_final/train_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (saved["schedule"].as_str(), saved["lr"].as_f64()),
        (Some("poly"), Some(0.003))
    );
    assert!(out.join("progress.png").is_file());
    let model_cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("checkpoint_final/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        model_cfg["feature_size"][0].as_u64(),
        Some(4),
        "the config file's model (micro)"
    );
    // --extend trains past the planned length; flags override the file.
    let o = repux(&[&base[..], &["--extend", "2"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(out.join("log.jsonl"))
            .unwrap()
            .lines()
            .count(),
        8
    );
    // An unknown key in the config is refused by name.
    std::fs::write(&cfg, "iterationz = 3\n").unwrap();
    let o = repux(&[
        "train",
        ds.to_str().unwrap(),
        "--plans",
        plans.to_str().unwrap(),
        "--out",
        d.path().join("m2").to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert!(
        !o.status.success()
            && stderr(&o).contains("train.toml")
            && stderr(&o).contains("iterationz"),
        "{}",
        stderr(&o)
    );
}

/// SwinUNETR through the unchanged commands: a plan for 32-multiples, `repux train` with the
/// preset, `repux predict` with the checkpoint; a 16-multiple plan is refused with the fix.
#[test]
fn swinunetr_trains_and_predicts_through_the_cli() {
    let d = tempfile::tempdir().unwrap();
    let ds = d.path().join("ds");
    common::synth(&ds, 3, 4);
    let plans16 = d.path().join("plans16.json");
    common::plan(&ds, &plans16, "4,4,4", "32,32,16", &[]);
    let out = d.path().join("model");
    let train = |plans: &Path| {
        repux(&[
            "train",
            ds.to_str().unwrap(),
            "--plans",
            plans.to_str().unwrap(),
            "--fold",
            "0",
            "--out",
            out.to_str().unwrap(),
            "--model-config",
            "swinunetr-tiny",
            "--iterations",
            "2",
            "--val-interval",
            "2",
            "--lr",
            "0.001",
        ])
    };
    let o = train(&plans16);
    assert!(
        !o.status.success()
            && stderr(&o).contains("multiple of 32")
            && stderr(&o).contains("--size-multiple 32"),
        "{}",
        stderr(&o)
    );
    let plans = d.path().join("plans.json");
    common::plan(&ds, &plans, "4,4,4", "32,32,32", &["--size-multiple", "32"]);
    let o = train(&plans);
    assert!(o.status.success(), "{}", stderr(&o));
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("checkpoint_final/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cfg["arch"].as_str(), Some("swinunetr"));
    let pred = d.path().join("pred");
    let o = repux(&[
        "predict",
        "-i",
        ds.join("imagesTr").to_str().unwrap(),
        "-o",
        pred.to_str().unwrap(),
        "-m",
        out.join("checkpoint_final").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let img = repux_volume::read_volume(&ds.join("imagesTr/phantom_000_0000.nii.gz")).unwrap();
    let seg = repux_volume::read_volume(&pred.join("phantom_000.nii.gz")).unwrap();
    assert_eq!(
        seg.geometry.shape, img.geometry.shape,
        "the segmentation is on the image's grid"
    );
}

#[test]
fn demo_runs_end_to_end_at_a_reduced_budget() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("demo");
    let o = repux(&[
        "demo",
        "--out",
        out.to_str().unwrap(),
        "--train-cases",
        "3",
        "--test-cases",
        "1",
        "--iterations",
        "4",
        "--model-preset",
        "micro",
        "--spacing",
        "4,4,4",
        "--patch",
        "32,32,16",
        "--compare",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    for organ in [
        "liver",
        "spleen",
        "kidneys",
        "pancreas",
        "foreground mean",
        "RepUX-Net (BFR)",
        "plain 21³ kernel",
        "SR",
        "3D UX-Net",
        "SwinUNETR",
    ] {
        assert!(stdout.contains(organ), "{organ} missing from\n{stdout}");
    }
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert!(s["foreground_mean"]["Dice"].is_number(), "{s}");
    assert!(out.join("compare.md").is_file());
    assert_eq!(png_size(&out.join("model/progress.png")), (1280, 480));
    let (w, h) = png_size(&out.join("overlay.png"));
    assert!(w > 300 && h > 360, "{w}×{h}");
}

#[test]
fn recipes_read_the_shipped_layouts_and_score_a_flare_model_with_the_mapping() {
    let d = tempfile::tempdir().unwrap();
    // A KiTS-layout folder made from two phantom cases (liver = 1 … as "kidney + masses").
    let ph = d.path().join("ph");
    common::synth(&ph, 2, 3);
    let kits = d.path().join("kits");
    for i in 0..2 {
        let case = kits.join(format!("data/case_{i:05}"));
        std::fs::create_dir_all(&case).unwrap();
        std::fs::copy(
            ph.join(format!("imagesTr/phantom_{i:03}_0000.nii.gz")),
            case.join("imaging.nii.gz"),
        )
        .unwrap();
        std::fs::copy(
            ph.join(format!("labelsTr/phantom_{i:03}.nii.gz")),
            case.join("segmentation.nii.gz"),
        )
        .unwrap();
    }
    let out = d.path().join("recipe");
    let o = repux(&[
        "recipe",
        "kits",
        "--data",
        kits.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Kits layout, 2 training cases"));
    let cmds = std::fs::read_to_string(out.join("commands.sh")).unwrap();
    assert!(
        cmds.contains("--pred-map 2=1 --ref-map 1=1,2=1,3=1")
            && cmds.contains("inputs/case_00001_0000.nii.gz"),
        "{cmds}"
    );
    let toml = std::fs::read_to_string(out.join("train.toml")).unwrap();
    assert!(toml.contains("lr = 1e-4") && toml.contains("iterations = 60000"));
    // The mapping at work: the phantom's own labels as "predictions" of a FLARE-like model whose
    // class 3 is scored against reference classes {3} → perfect Dice; against {2} → 0.
    let refs = ph.join("labelsTr");
    let e = d.path().join("eval");
    let o = repux(&[
        "evaluate",
        "--pred",
        refs.to_str().unwrap(),
        "--ref",
        refs.to_str().unwrap(),
        "--pred-map",
        "3=1",
        "--ref-map",
        "3=1",
        "-o",
        e.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(e.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["mean"]["1"]["Dice"].as_f64(), Some(1.0), "{s}");
    assert!(
        s["mean"].get("2").is_none(),
        "only the mapped class is scored"
    );
    let o = repux(&[
        "evaluate",
        "--pred",
        refs.to_str().unwrap(),
        "--ref",
        refs.to_str().unwrap(),
        "--pred-map",
        "3=1",
        "--ref-map",
        "2=1",
        "-o",
        e.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(e.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["mean"]["1"]["Dice"].as_f64(), Some(0.0));
    // The wrong layout for the recipe is named; DICOM gets the conversion note.
    let o = repux(&[
        "recipe",
        "lits",
        "--data",
        d.path().join("empty").to_str().unwrap(),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("volume-N.nii"),
        "{}",
        stderr(&o)
    );
}

/// TCIA Pancreas-CT as downloaded (DICOM series + label NIfTIs, `tools/tcia_fixture.py`): the
/// recipe's script runs as written — check, plan, preprocess, predict with a FLARE-class model
/// (the external test), evaluate with the mapping — and a model trains on the DICOM dataset.
#[test]
fn tcia_pancreas_recipe_runs_on_dicom_series() {
    let d = tempfile::tempdir().unwrap();
    let tcia = Path::new(env!("CARGO_MANIFEST_DIR")).join("../volume/tests/fixtures/tcia");
    let out = d.path().join("recipe");
    let o = repux(&[
        "recipe",
        "tcia-pancreas",
        "--data",
        tcia.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("TciaPancreas layout, 2 training cases, 1 test"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let cmds = std::fs::read_to_string(out.join("commands.sh")).unwrap();
    assert!(
        cmds.contains("ln -sfn") && cmds.contains("\"inputs/PANCREAS_0002\""),
        "{cmds}"
    );
    // A FLARE-class model (liver 1, kidney 2, spleen 3, pancreas 4) on the recipe's plans.
    let ph = d.path().join("ph");
    common::synth(&ph, 2, 4);
    let flare_plans = d.path().join("flare_plans.json");
    common::plan(&ph, &flare_plans, "4,4,4", "32,32,16", &[]);
    let model = d.path().join("flare_model");
    common::import_model("micro", &flare_plans, &model);
    let o = Command::new("sh")
        .arg(out.join("commands.sh"))
        .current_dir(d.path())
        .env("REPUX", env!("CARGO_BIN_EXE_repux"))
        .env("SPACING", "4,4,4")
        .env("PATCH", "32,32,16")
        .env("FLARE_MODEL", &model)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "commands.sh failed:\n{stdout}\n{}",
        stderr(&o)
    );
    assert!(stdout.contains("2 of 2 cases predicted"), "{stdout}");
    for f in [
        "predictions/PANCREAS_0001.nii.gz",
        "predictions/PANCREAS_0002.nii.gz",
        "predictions/summary.json",
        "preprocessed/PANCREAS_0001_image.npy",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let s: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("predictions/summary.json")).unwrap(),
    )
    .unwrap();
    assert!(s["mean"]["1"]["Dice"].is_number(), "pancreas scored: {s}");
    // The predictions lie on the series' grid; the reference NIfTI, in dcm2niix's axis order,
    // was read onto it.
    let series = repux_volume::read_volume(&tcia.join("Pancreas-CT/PANCREAS_0001")).unwrap();
    let pred = repux_volume::read_volume(&out.join("predictions/PANCREAS_0001.nii.gz")).unwrap();
    assert!(pred.geometry.max_affine_diff(&series.geometry) < 1e-4);
    // The QC sheet over the series the recipe linked (folders named by case).
    let qc = d.path().join("qc");
    let o = repux(&[
        "evaluate",
        "--pred",
        out.join("predictions").to_str().unwrap(),
        "--ref",
        out.join("references").to_str().unwrap(),
        "--pred-map",
        "4=1",
        "--ref-map",
        "1=1",
        "--qc",
        "--images",
        out.join("inputs").to_str().unwrap(),
        "-o",
        qc.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(qc.join("qc.png").is_file());
    // overlay takes the series folder and its label in dcm2niix's axis order; a label on
    // another grid is refused with both names.
    let label = tcia.join("TCIA_pancreas_labels-02-05-2017/label0001.nii.gz");
    let series_dir = tcia.join("Pancreas-CT/PANCREAS_0001");
    let png = d.path().join("ov.png");
    let o = repux(&[
        "overlay",
        "--out",
        png.to_str().unwrap(),
        series_dir.to_str().unwrap(),
        label.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(png.is_file());
    let other = ph.join("labelsTr/phantom_000.nii.gz");
    let o = repux(&[
        "overlay",
        "--out",
        png.to_str().unwrap(),
        series_dir.to_str().unwrap(),
        other.to_str().unwrap(),
    ]);
    assert!(
        !o.status.success()
            && stderr(&o).contains("phantom_000.nii.gz: not on the grid of")
            && stderr(&o).contains("PANCREAS_0001"),
        "{}",
        stderr(&o)
    );
    // Training on the DICOM dataset itself (two steps).
    let o = repux(&[
        "train",
        tcia.to_str().unwrap(),
        "--plans",
        out.join("plans.json").to_str().unwrap(),
        "--fold",
        "all",
        "--out",
        d.path().join("run").to_str().unwrap(),
        "--model-preset",
        "micro",
        "--iterations",
        "2",
        "--val-interval",
        "2",
        "--cache",
        out.join("preprocessed").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(d
        .path()
        .join("run/checkpoint_final/model.safetensors")
        .is_file());
}

/// The script `repux recipe` writes runs as it is (only its documented variables set) on a
/// FLARE-layout dataset given by a relative path: check, plan, preprocess, two folds, the folds'
/// ensemble with test-time mirroring, evaluation. Then `predict -m` on training folders.
#[test]
fn recipe_script_runs_end_to_end_and_training_folders_predict() {
    let d = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_repux"))
            .args(args)
            .current_dir(d.path())
            .output()
            .unwrap()
    };
    assert!(
        run(&["synth", "--out", "flare", "--cases", "5", "--seed", "8"])
            .status
            .success()
    );
    let o = run(&["recipe", "flare", "--data", "flare", "--out", "recipe"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rdir = d.path().join("recipe");
    // A user's edits to the config files: a tiny budget and network.
    let toml = std::fs::read_to_string(rdir.join("train.toml"))
        .unwrap()
        .replace("iterations = 60000", "iterations = 2")
        .replace("val_interval = 500", "val_interval = 2");
    std::fs::write(rdir.join("train.toml"), toml).unwrap();
    let mut model: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(rdir.join("model.json")).unwrap()).unwrap();
    model["feature_size"] = serde_json::json!([4, 8, 16, 32]);
    model["hidden_size"] = 64.into();
    model["kernel_size"] = 7.into();
    std::fs::write(rdir.join("model.json"), model.to_string()).unwrap();
    let o = Command::new("sh")
        .arg("recipe/commands.sh")
        .current_dir(d.path())
        .env("REPUX", env!("CARGO_BIN_EXE_repux"))
        .env("SPACING", "4,4,4")
        .env("PATCH", "32,32,16")
        .env("FOLDS", "0 1")
        .env("TEST_IMAGES", d.path().join("flare/imagesTr"))
        .env("TEST_LABELS", d.path().join("flare/labelsTr"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "commands.sh failed:\n{out}\n{}",
        stderr(&o)
    );
    assert!(out.contains("ensemble of 2 models"), "{out}");
    for f in [
        "runs/fold_0/checkpoint_final/model.safetensors",
        "runs/fold_1/checkpoint_final/model.safetensors",
        "predictions/phantom_004.nii.gz",
        "predictions/summary.json",
    ] {
        assert!(rdir.join(f).is_file(), "{f}");
    }
    // A training folder predicts (final, else best; or the checkpoint asked for), with
    // mirroring off on request.
    let img = d.path().join("flare/imagesTr/phantom_000_0000.nii.gz");
    let fold0 = rdir.join("runs/fold_0");
    for extra in [&[][..], &["--checkpoint", "latest", "--tta", "none"][..]] {
        let o = run(&[
            &[
                "predict",
                "-i",
                img.to_str().unwrap(),
                "-o",
                "p1",
                "-m",
                fold0.to_str().unwrap(),
            ][..],
            extra,
        ]
        .concat());
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(d.path().join("p1/phantom_000.nii.gz").is_file());
    }
    // Members of an ensemble must share plans: another patch size is refused by name.
    assert!(run(&[
        "plan",
        "flare",
        "-o",
        "other.json",
        "--target-spacing",
        "4,4,4",
        "--patch-size",
        "16,16,16"
    ])
    .status
    .success());
    assert!(run(&[
        "model",
        "import",
        "--model-config",
        "micro",
        "--plans",
        "other.json",
        "--out",
        "other"
    ])
    .status
    .success());
    let o = run(&[
        "predict",
        "-i",
        img.to_str().unwrap(),
        "-o",
        "p2",
        "-m",
        fold0.to_str().unwrap(),
        "-m",
        "other",
    ]);
    assert!(
        !o.status.success()
            && stderr(&o).contains("cannot ensemble")
            && stderr(&o).contains("plans.json"),
        "{}",
        stderr(&o)
    );
    let o = run(&[
        "predict",
        "-i",
        img.to_str().unwrap(),
        "-o",
        "p2",
        "-m",
        "flare",
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("training folder"),
        "{}",
        stderr(&o)
    );
    // A model exported for PyTorch users and imported back predicts the same labels.
    let o = run(&[
        "model",
        "export",
        "-m",
        fold0.to_str().unwrap(),
        "--format",
        "pth",
        "-o",
        "fold0.pth",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let plans = fold0.join("checkpoint_final/plans.json");
    let cfg = fold0.join("checkpoint_final/config.json");
    assert!(run(&[
        "model",
        "import",
        "--model-config",
        cfg.to_str().unwrap(),
        "--plans",
        plans.to_str().unwrap(),
        "--weights",
        "fold0.pth",
        "--out",
        "reimported"
    ])
    .status
    .success());
    assert!(run(&[
        "predict",
        "-i",
        img.to_str().unwrap(),
        "-o",
        "p3",
        "-m",
        "reimported",
        "--tta",
        "none"
    ])
    .status
    .success());
    assert!(run(&[
        "predict",
        "-i",
        img.to_str().unwrap(),
        "-o",
        "p4",
        "-m",
        fold0.join("checkpoint_final").to_str().unwrap(),
        "--tta",
        "none"
    ])
    .status
    .success());
    let a = repux_volume::read_volume(&d.path().join("p3/phantom_000.nii.gz")).unwrap();
    let b = repux_volume::read_volume(&d.path().join("p4/phantom_000.nii.gz")).unwrap();
    let differ = a.data.iter().zip(&b.data).filter(|(x, y)| x != y).count();
    assert!(
        differ * 10_000 <= a.data.len(),
        "{differ} of {} voxels differ after export → import",
        a.data.len()
    );
}

/// Width and height of a PNG, after decoding it whole (a truncated file fails).
fn png_size(path: &Path) -> (u32, u32) {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).unwrap();
    (info.width, info.height)
}

/// `--precision bf16` is announced, reaches the network's GEMMs (the logits move) and keeps the
/// accuracy contract: no further from PyTorch's float64 logits than PyTorch's own bf16 autocast
/// (crates/nn/tests/fixtures/bf16_autocast.json).
#[test]
fn forward_in_bf16_is_announced_and_keeps_the_contract() {
    let d = tempfile::tempdir().unwrap();
    let anchor: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(nn_fixture("bf16_autocast.json")).unwrap())
            .unwrap();
    let out = d.path().join("y.npy");
    let o = repux_ok(&[
        "forward",
        "--model-config",
        nn_fixture("repux_k21.json").to_str().unwrap(),
        "--weights",
        nn_fixture("repux_k21.pth").to_str().unwrap(),
        "--input",
        nn_fixture("repux_k21_input.npy").to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--precision",
        "bf16",
    ]);
    assert!(stderr(&o).contains("precision: bf16"), "{}", stderr(&o));
    let got = repux_volume::npy::read(&out).unwrap();
    let want = repux_volume::npy::read(&nn_fixture("repux_k21_logits.npy")).unwrap();
    let e = rel_l2(&got.data, &want.data);
    let torch = anchor["repux_k21"]["rel_l2"].as_f64().unwrap();
    assert!(
        e > 1e-3 && e <= torch,
        "relative L2 {e}, PyTorch autocast {torch}"
    );
}

/// `bench predict --json` gives the record the issue fixed: seconds, peak RSS, precision, the
/// GEMM level and the windows (nnU-Net's placement: 3 × 3 × 2 at 64×64×48 with 32³ and 0.5).
#[test]
fn bench_predict_reports_its_record() {
    for precision in ["fp32", "bf16"] {
        let o = repux_ok(&[
            "bench",
            "predict",
            "--model-config",
            "micro",
            "--shape",
            "64,64,48",
            "--patch",
            "32,32,32",
            "--classes",
            "3",
            "--precision",
            precision,
            "--json",
        ]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(v["seconds"].as_f64().unwrap() > 0.0);
        assert!(v["peak_rss_bytes"].as_u64().unwrap() > 1 << 20);
        assert_eq!(v["precision"], precision);
        assert_eq!(v["windows"], 18);
        assert!(v["isa"].is_string());
    }
    let o = repux(&[
        "bench",
        "predict",
        "--model-config",
        "micro",
        "--shape",
        "64,64,48",
        "--patch",
        "30,32,32",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("multiple of 16"), "{}", stderr(&o));
}

/// `bench model --json` says whether a time is of the process's first run: with
/// `--warm-only-s 0` the warm-up is the measurement, by default (30 s) a micro network's passes
/// are timed after it; a negative or non-numeric limit is refused before any work.
#[test]
fn bench_model_says_which_run_it_timed() {
    let run = |extra: &[&str]| {
        let mut args = vec![
            "bench",
            "model",
            "--model-config",
            "micro",
            "--patch",
            "32,32,32",
            "--no-burn",
            "--repeats",
            "1",
            "--json",
        ];
        args.extend_from_slice(extra);
        let o = repux_ok(&args);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let recs = v.as_array().unwrap().clone();
        assert_eq!(recs.len(), 2);
        assert_eq!(
            (recs[0]["pass"].clone(), recs[1]["pass"].clone()),
            ("forward".into(), "train_step".into())
        );
        recs.iter()
            .map(|r| r["first_run"].as_bool().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(run(&["--warm-only-s", "0"]), [true, true]);
    assert_eq!(run(&[]), [false, false]);
    for bad in ["-1", "nan", "soon"] {
        let o = repux(&["bench", "model", &format!("--warm-only-s={bad}")]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert!(stderr(&o).contains("--warm-only-s"), "{}", stderr(&o));
        assert!(o.stdout.is_empty());
    }
}

/// `REPUX_BF16_LEVEL` caps the bf16 level the record names; a value it does not know stops the
/// run before any work, naming the variable.
#[test]
fn bf16_level_cap_comes_from_the_environment() {
    let args = [
        "bench",
        "predict",
        "--model-config",
        "micro",
        "--shape",
        "32,32,32",
        "--patch",
        "32,32,32",
        "--classes",
        "2",
        "--precision",
        "bf16",
        "--json",
    ];
    let run = |level: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_repux"))
            .args(args)
            .env("REPUX_BF16_LEVEL", level)
            .output()
            .unwrap()
    };
    let o = run("fp32");
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["isa"], "fp32");
    let o = run("avx2");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("REPUX_BF16_LEVEL") && stderr(&o).contains("\"avx2\""),
        "{}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty());
}

/// `--device gpu` in a build without the `gpu` feature fails before any work and says how to
/// build the GPU path; a malformed device is refused by the parser.
#[cfg(not(feature = "gpu"))]
#[test]
fn device_gpu_in_a_cpu_build_says_how_to_build_it() {
    let o = repux(&["bench", "model", "--device", "gpu", "--forward-only"]);
    assert!(
        !o.status.success() && stderr(&o).contains("--features gpu"),
        "{}",
        stderr(&o)
    );
    let o = repux(&[
        "predict", "-i", ".", "-o", ".", "-m", ".", "--device", "cuda",
    ]);
    assert!(
        !o.status.success()
            && stderr(&o).contains("expected auto, cpu, gpu, gpu:N or gpu:software"),
        "{}",
        stderr(&o)
    );
}
