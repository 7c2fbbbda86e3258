//! Every kind of bad input gives an error that names the file and the problem — never a panic.

use repux_volume::geometry::IDENTITY;
use repux_volume::nifti::write_nifti;
use repux_volume::{DataType, Geometry};
use std::path::{Path, PathBuf};

fn good_nii(dir: &Path, name: &str) -> PathBuf {
    let g = Geometry::from_affine([4, 5, 6], IDENTITY);
    let data: Vec<f32> = (0..120).map(|v| v as f32).collect();
    let p = dir.join(name);
    write_nifti(&p, &g, 1, &data, DataType::I16).unwrap();
    p
}

fn err_of(p: &Path) -> String {
    match repux_volume::read(p) {
        Ok(_) => panic!("{} read without error", p.display()),
        Err(e) => {
            let s = e.to_string();
            assert!(
                s.contains(&p.file_name().unwrap().to_string_lossy().to_string()),
                "error does not name the file: {s}"
            );
            s
        }
    }
}

fn patch(p: &Path, offset: usize, bytes: &[u8]) {
    let mut b = std::fs::read(p).unwrap();
    b[offset..offset + bytes.len()].copy_from_slice(bytes);
    std::fs::write(p, b).unwrap();
}

#[test]
fn truncated_gzip() {
    let d = tempfile::tempdir().unwrap();
    let p = good_nii(d.path(), "t.nii.gz");
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..b.len() / 2]).unwrap();
    let e = err_of(&p);
    assert!(e.contains("gzip") && e.contains("truncated"), "{e}");
}

#[test]
fn data_shorter_than_header_says() {
    let d = tempfile::tempdir().unwrap();
    let p = good_nii(d.path(), "short.nii");
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..b.len() - 10]).unwrap();
    let e = err_of(&p);
    assert!(e.contains("truncated") && e.contains("240 bytes"), "{e}");
}

#[test]
fn zero_and_negative_dims() {
    let d = tempfile::tempdir().unwrap();
    let p = good_nii(d.path(), "dim0.nii");
    patch(&p, 40, &0i16.to_le_bytes());
    assert!(err_of(&p).contains("dim[0] = 0"));
    let p = good_nii(d.path(), "neg.nii");
    patch(&p, 44, &(-5i16).to_le_bytes());
    assert!(err_of(&p).contains("dim[2] = -5"));
}

#[test]
fn unknown_and_rejected_datatypes() {
    let d = tempfile::tempdir().unwrap();
    let p = good_nii(d.path(), "rgb.nii");
    patch(&p, 70, &128i16.to_le_bytes());
    let e = err_of(&p);
    assert!(e.contains("datatype 128") && e.contains("RGB"), "{e}");
    let p = good_nii(d.path(), "complex.nii");
    patch(&p, 70, &32i16.to_le_bytes());
    assert!(err_of(&p).contains("complex64"));
    let p = good_nii(d.path(), "weird.nii");
    patch(&p, 70, &999i16.to_le_bytes());
    assert!(err_of(&p).contains("not a NIfTI datatype"));
}

#[test]
fn not_nifti_and_unknown_extension() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("garbage.nii");
    std::fs::write(
        &p,
        b"this is not an image at all, but long enough to hold a sizeof_hdr",
    )
    .unwrap();
    assert!(err_of(&p).contains("not a NIfTI file"));
    let p = d.path().join("empty.nii.gz");
    std::fs::write(&p, b"").unwrap();
    assert!(err_of(&p).contains("file is empty"));
    let p = d.path().join("image.png");
    std::fs::write(&p, b"x").unwrap();
    assert!(err_of(&p).contains("unrecognised file type"));
    let p = d.path().join("missing.nii.gz");
    assert!(err_of(&p).contains("cannot read"));
}

#[test]
fn pair_without_img() {
    let d = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pair.hdr");
    let p = d.path().join("lonely.hdr");
    std::fs::copy(src, &p).unwrap();
    let e = repux_volume::read(&p).unwrap_err().to_string();
    assert!(e.contains("lonely.img") && e.contains("cannot read"), "{e}");
}

#[test]
fn nrrd_problems() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("short.nrrd");
    std::fs::write(
        &p,
        b"NRRD0004\ntype: short\ndimension: 3\nsizes: 4 4 4\nencoding: raw\n\n0123",
    )
    .unwrap();
    assert!(err_of(&p).contains("truncated"));
    let p = d.path().join("nosizes.nrrd");
    std::fs::write(
        &p,
        b"NRRD0004\ntype: short\ndimension: 3\nencoding: raw\n\n",
    )
    .unwrap();
    assert!(err_of(&p).contains("\"sizes\" is missing"));
    let p = d.path().join("detached.nhdr");
    std::fs::write(
        &p,
        b"NRRD0004\ntype: uchar\ndimension: 1\nsizes: 4\nencoding: raw\ndata file: nowhere.raw\n",
    )
    .unwrap();
    let e = repux_volume::read(&p).unwrap_err().to_string();
    assert!(e.contains("nowhere.raw"), "{e}");
}

#[test]
fn write_refuses_values_that_do_not_fit_and_leaves_no_file() {
    let d = tempfile::tempdir().unwrap();
    let g = Geometry::from_affine([2, 2, 2], IDENTITY);
    let p = d.path().join("lab.nii.gz");
    let e = write_nifti(
        &p,
        &g,
        1,
        &[0.0, 1.0, 2.0, 300.0, 0.0, 0.0, 0.0, 0.0],
        DataType::U8,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("300") && e.contains("uint8"), "{e}");
    assert!(!p.exists());
    assert_eq!(
        std::fs::read_dir(d.path()).unwrap().count(),
        0,
        "no temporary file left behind"
    );
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A cheap in-test stand-in for the fuzz targets: header parsers on mutated valid headers.
    let d = tempfile::tempdir().unwrap();
    let p = good_nii(d.path(), "seed.nii");
    let seed = std::fs::read(&p).unwrap();
    let mut x: u64 = 0x1234_5678;
    for _ in 0..20_000 {
        let mut b = seed.clone();
        for _ in 0..4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x as usize) % 352;
            b[i] = (x >> 32) as u8;
        }
        let _ = repux_volume::nifti::parse_header(&b);
        let cut = (x as usize >> 8) % b.len();
        let _ = repux_volume::nifti::parse_header(&b[..cut]);
        let _ = repux_volume::nrrd::parse_header(&b[..cut]);
    }
}
