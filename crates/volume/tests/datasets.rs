//! Dataset layouts as shipped (nnU-Net v2, Decathlon, paired folders) and the integrity check.

use repux_volume::dataset::{check, Dataset};
use repux_volume::geometry::IDENTITY;
use repux_volume::nifti::write_nifti;
use repux_volume::{DataType, Geometry, Layout};
use std::path::Path;

fn img(p: &Path, shape: [usize; 3], channels: usize, fill: impl Fn(usize) -> f32, dt: DataType) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let g = Geometry::from_affine(shape, IDENTITY);
    let data: Vec<f32> = (0..g.voxels() * channels).map(fill).collect();
    write_nifti(p, &g, channels, &data, dt).unwrap();
}

fn nnunet(dir: &Path, cases: &[&str], channels: usize) {
    for c in cases {
        for ch in 0..channels {
            img(
                &dir.join(format!("imagesTr/{c}_{ch:04}.nii.gz")),
                [4, 4, 4],
                1,
                |i| i as f32,
                DataType::I16,
            );
        }
        img(
            &dir.join(format!("labelsTr/{c}.nii.gz")),
            [4, 4, 4],
            1,
            |i| (i % 3) as f32,
            DataType::U8,
        );
    }
    let names: serde_json::Map<String, serde_json::Value> = (0..channels)
        .map(|c| (c.to_string(), format!("mod{c}").into()))
        .collect();
    let j = serde_json::json!({"channel_names": names, "labels": {"background": 0, "a": 1, "b": 2}, "numTraining": cases.len(), "file_ending": ".nii.gz"});
    std::fs::write(dir.join("dataset.json"), j.to_string()).unwrap();
}

#[test]
fn nnunet_v2_layout_reads_and_checks_clean() {
    let d = tempfile::tempdir().unwrap();
    nnunet(d.path(), &["la_001", "la_002"], 2);
    img(
        &d.path().join("imagesTs/la_010_0000.nii.gz"),
        [4, 4, 4],
        1,
        |_| 0.0,
        DataType::I16,
    );
    img(
        &d.path().join("imagesTs/la_010_0001.nii.gz"),
        [4, 4, 4],
        1,
        |_| 0.0,
        DataType::I16,
    );
    let ds = Dataset::open(d.path()).unwrap();
    assert_eq!(ds.layout, Layout::NnUnetV2);
    assert_eq!(ds.training.len(), 2);
    assert_eq!(ds.training[0].id, "la_001");
    assert_eq!(ds.training[0].images.len(), 2);
    assert!(ds.training[0].images[1].ends_with("imagesTr/la_001_0001.nii.gz"));
    assert_eq!(ds.test.len(), 1);
    assert_eq!(ds.channel_names, vec!["mod0", "mod1"]);
    let r = check(&ds);
    assert!(r.ok(), "{:?}", r);
    assert_eq!(r.cases[0].label_values, vec![0, 1, 2]);
}

#[test]
fn nnunet_problems_are_reported() {
    let d = tempfile::tempdir().unwrap();
    nnunet(d.path(), &["a", "b", "c", "e"], 1);
    // b: label shape mismatch; c: undeclared label value and NaN image; d: no label; e: shifted affine
    img(
        &d.path().join("labelsTr/b.nii.gz"),
        [4, 4, 5],
        1,
        |_| 0.0,
        DataType::U8,
    );
    img(
        &d.path().join("labelsTr/c.nii.gz"),
        [4, 4, 4],
        1,
        |i| if i == 5 { 7.0 } else { 0.0 },
        DataType::U8,
    );
    img(
        &d.path().join("imagesTr/c_0000.nii.gz"),
        [4, 4, 4],
        1,
        |i| if i == 3 { f32::NAN } else { 1.0 },
        DataType::F32,
    );
    img(
        &d.path().join("imagesTr/d_0000.nii.gz"),
        [4, 4, 4],
        1,
        |_| 0.0,
        DataType::I16,
    );
    let mut g = Geometry::from_affine([4, 4, 4], IDENTITY);
    g.affine[0][3] = 0.01;
    write_nifti(
        &d.path().join("labelsTr/e.nii.gz"),
        &g,
        1,
        &[0.0; 64],
        DataType::U8,
    )
    .unwrap();
    let ds = Dataset::open(d.path()).unwrap();
    let r = check(&ds);
    assert!(!r.ok());
    let all = format!("{:#?}", r);
    assert!(
        all.contains("b.nii.gz: shape [4, 4, 5] does not match"),
        "{all}"
    );
    assert!(all.contains("label values [7] are not declared"), "{all}");
    assert!(
        all.contains("c_0000.nii.gz: 1 voxels are NaN or infinite"),
        "{all}"
    );
    assert!(all.contains("case d: no label file"), "{all}");
    assert!(all.contains("numTraining = 4, found 5"), "{all}");
    assert!(all.contains("e.nii.gz: affine differs"), "{all}");
}

#[test]
fn decathlon_layout_with_4d_images() {
    let d = tempfile::tempdir().unwrap();
    img(
        &d.path().join("imagesTr/prostate_00.nii.gz"),
        [4, 4, 4],
        2,
        |i| i as f32,
        DataType::F32,
    );
    img(
        &d.path().join("labelsTr/prostate_00.nii.gz"),
        [4, 4, 4],
        1,
        |i| (i % 2) as f32,
        DataType::U8,
    );
    // macOS resource-fork droppings ship in the MSD tars; they must be ignored.
    std::fs::write(d.path().join("imagesTr/._prostate_00.nii.gz"), b"junk").unwrap();
    let j = serde_json::json!({"name": "Prostate", "modality": {"0": "T2", "1": "ADC"}, "labels": {"0": "background", "1": "PZ"},
        "numTraining": 1, "training": [{"image": "./imagesTr/prostate_00.nii.gz", "label": "./labelsTr/prostate_00.nii.gz"}], "test": ["./imagesTs/prostate_03.nii.gz"]});
    std::fs::write(d.path().join("dataset.json"), j.to_string()).unwrap();
    let ds = Dataset::open(d.path()).unwrap();
    assert_eq!(ds.layout, Layout::Decathlon);
    assert_eq!(ds.training[0].id, "prostate_00");
    assert_eq!(ds.test[0].id, "prostate_03");
    assert_eq!(
        ds.labels,
        vec![("background".to_string(), 0), ("PZ".to_string(), 1)]
    );
    let r = check(&ds);
    assert!(r.ok(), "{r:#?}");
    assert_eq!(r.cases[0].channels, 2);
}

#[test]
fn paired_folders() {
    let d = tempfile::tempdir().unwrap();
    img(
        &d.path().join("images/x1.nii.gz"),
        [3, 3, 3],
        1,
        |_| 1.0,
        DataType::I16,
    );
    img(
        &d.path().join("labels/x1.nii.gz"),
        [3, 3, 3],
        1,
        |_| 1.0,
        DataType::U8,
    );
    img(
        &d.path().join("images/x2.nii.gz"),
        [3, 3, 3],
        1,
        |_| 1.0,
        DataType::I16,
    );
    let ds = Dataset::open(d.path()).unwrap();
    assert_eq!(ds.layout, Layout::Paired);
    let r = check(&ds);
    assert!(!r.ok());
    assert!(format!("{r:?}").contains("case x2: no label file"));
}

#[test]
fn kits_case_folders() {
    let d = tempfile::tempdir().unwrap();
    for c in ["case_00000", "case_00001"] {
        img(
            &d.path().join(format!("data/{c}/imaging.nii.gz")),
            [3, 3, 3],
            1,
            |_| 1.0,
            DataType::I16,
        );
        img(
            &d.path().join(format!("data/{c}/segmentation.nii.gz")),
            [3, 3, 3],
            1,
            |i| (i % 3) as f32,
            DataType::U8,
        );
    }
    img(
        &d.path().join("data/case_00300/imaging.nii.gz"),
        [3, 3, 3],
        1,
        |_| 1.0,
        DataType::I16,
    );
    let ds = Dataset::open(d.path()).unwrap();
    assert_eq!(ds.layout, Layout::Kits);
    assert_eq!(
        ds.training
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>(),
        ["case_00000", "case_00001"]
    );
    assert_eq!(
        ds.test.len(),
        1,
        "a case folder without a segmentation is a test case"
    );
    let r = check(&ds);
    assert!(r.ok(), "{r:#?}");
}

#[test]
fn lits_volume_and_segmentation_files() {
    let d = tempfile::tempdir().unwrap();
    for (sub, n) in [
        ("Training Batch 1", 0),
        ("Training Batch 1", 1),
        ("Training Batch 2", 28),
    ] {
        img(
            &d.path().join(format!("{sub}/volume-{n}.nii")),
            [3, 3, 3],
            1,
            |_| 1.0,
            DataType::I16,
        );
        img(
            &d.path().join(format!("{sub}/segmentation-{n}.nii")),
            [3, 3, 3],
            1,
            |i| (i % 3) as f32,
            DataType::U8,
        );
    }
    img(
        &d.path().join("Training Batch 2/segmentation-99.nii"),
        [3, 3, 3],
        1,
        |_| 0.0,
        DataType::U8,
    );
    let ds = Dataset::open(d.path()).unwrap();
    assert_eq!(ds.layout, Layout::Lits);
    assert_eq!(
        ds.training
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>(),
        ["liver_0", "liver_1", "liver_28"]
    );
    assert_eq!(ds.labels.len(), 3);
    let r = check(&ds);
    assert!(
        !r.ok() && format!("{r:?}").contains("segmentation-99.nii: segmentation without a volume"),
        "{r:#?}"
    );
}

#[test]
fn empty_or_broken_folders_are_errors() {
    let d = tempfile::tempdir().unwrap();
    let e = Dataset::open(d.path()).unwrap_err().to_string();
    assert!(e.contains("not a dataset"), "{e}");
    std::fs::create_dir_all(d.path().join("imagesTr")).unwrap();
    std::fs::write(
        d.path().join("dataset.json"),
        r#"{"channel_names": {"0": "CT"}, "labels": {"background": 0}, "numTraining": 0}"#,
    )
    .unwrap();
    let e = Dataset::open(d.path()).unwrap_err().to_string();
    assert!(
        e.contains("dataset.json") && e.contains("missing key \"file_ending\""),
        "{e}"
    );
    std::fs::write(d.path().join("dataset.json"), r#"{"channel_names": {"0": "CT"}, "labels": {"background": 0}, "numTraining": 0, "file_ending": ".nii.gz"}"#).unwrap();
    let e = Dataset::open(d.path()).unwrap_err().to_string();
    assert!(e.contains("no training cases"), "{e}");
    std::fs::write(d.path().join("dataset.json"), "{not json").unwrap();
    let e = Dataset::open(d.path()).unwrap_err().to_string();
    assert!(
        e.contains("dataset.json") && e.contains("invalid JSON"),
        "{e}"
    );
    let e = Dataset::open(&d.path().join("nope"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a folder"), "{e}");
}

#[test]
fn synth_dataset_passes_its_own_check() {
    let d = tempfile::tempdir().unwrap();
    repux_volume::synth::write_dataset(d.path(), 3, 5, |_| {}).unwrap();
    let ds = Dataset::open(d.path()).unwrap();
    assert_eq!(ds.training.len(), 3);
    let r = check(&ds);
    assert!(r.ok(), "{r:#?}");
    let orients: std::collections::BTreeSet<_> = (0..8)
        .map(|i| repux_volume::synth::generate_case(5, i).image.orientation())
        .collect();
    assert!(
        orients.contains("RAS") && orients.contains("LPS"),
        "{orients:?}"
    );
    for c in &r.cases {
        assert_eq!(c.label_values, vec![0, 1, 2, 3, 4]);
    }
}

/// TCIA Pancreas-CT as NBIA ships it (`tools/tcia_fixture.py`): DICOM series in patient folders,
/// label NIfTIs written by dcm2niix in its own axis order, read onto the series' grid.
#[test]
fn tcia_pancreas_dicom_series_with_nifti_labels() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tcia");
    let ds = Dataset::open(&root).unwrap();
    assert_eq!(ds.layout, Layout::TciaPancreas);
    let ids: Vec<&str> = ds.training.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["PANCREAS_0001", "PANCREAS_0002"]);
    assert_eq!(ds.test.len(), 1, "PANCREAS_0003 has no label");
    assert!(
        ds.training[0].images[0].is_dir(),
        "the image is the patient folder"
    );
    let r = check(&ds);
    assert!(r.ok(), "{r:#?}");
    // The label, reoriented onto the series, covers the bright blob the phantom drew.
    for c in &ds.training {
        let img = repux_volume::read_volume(&c.images[0]).unwrap();
        let lab = repux_volume::read_volume(c.label.as_ref().unwrap()).unwrap();
        assert_ne!(
            lab.geometry.orientation(),
            img.geometry.orientation(),
            "the fixture's label is stored in another axis order"
        );
        let lab = lab
            .onto_grid(&img.geometry, repux_volume::dataset::GEOMETRY_TOLERANCE)
            .unwrap();
        let agree = img
            .data
            .iter()
            .zip(&lab.data)
            .filter(|(&v, &l)| (v > 75.0) == (l == 1.0))
            .count();
        let n = img.data.len();
        assert!(agree as f64 > 0.99 * n as f64, "{}: {agree} of {n}", c.id);
        assert!(lab.data.iter().filter(|&&l| l == 1.0).count() > 50);
    }
    // A label shifted by a voxel is not the series' grid: the check says so.
    let d = tempfile::tempdir().unwrap();
    let copy = d.path().join("tcia");
    copy_dir(&root, &copy);
    let l = copy.join("TCIA_pancreas_labels-02-05-2017/label0001.nii.gz");
    let mut v = repux_volume::read_volume(&l).unwrap();
    v.geometry.affine[2][3] += 2.5;
    write_nifti(&l, &v.geometry, 1, &v.data, DataType::U8).unwrap();
    let r = check(&Dataset::open(&copy).unwrap());
    let all = format!("{r:#?}");
    assert!(
        all.contains("label0001.nii.gz: affine differs") && all.contains("no reordering"),
        "{all}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let t = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &t);
        } else {
            std::fs::copy(&p, &t).unwrap();
        }
    }
}
