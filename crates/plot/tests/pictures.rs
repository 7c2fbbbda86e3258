//! The pictures decode as PNG with the expected size, and show what they claim: label colours
//! where the labels are, in the radiological orientation.

use repux_plot::{draw_curves, draw_overlay, draw_qc_sheet, Curves, QcCase};
use repux_volume::{Geometry, Volume};
use std::collections::BTreeMap;
use std::path::Path;

fn decode(path: &Path) -> (u32, u32, Vec<u8>) {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

/// A 2 × 1 × 1 mm grid in RAS (i grows towards the patient's right) with a bright block
/// labelled 1 at the right and a label-2 block anterior on the left.
fn phantom() -> (Volume, Volume) {
    let shape = [40, 48, 24];
    let g = Geometry::from_affine(
        shape,
        [
            [2.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ],
    );
    let n: usize = shape.iter().product();
    let mut img = vec![0f32; n];
    let mut lab = vec![0f32; n];
    for i in 0..shape[0] {
        for j in 0..shape[1] {
            for k in 0..shape[2] {
                let v = (i * shape[1] + j) * shape[2] + k;
                img[v] = ((i + j + k) % 7) as f32 * 10.0;
                if i >= 30 && (10..20).contains(&j) && (8..16).contains(&k) {
                    lab[v] = 1.0;
                    img[v] = 200.0;
                }
                if (5..12).contains(&i) && j >= 38 && (8..16).contains(&k) {
                    lab[v] = 2.0;
                }
            }
        }
    }
    (Volume::new(g.clone(), 1, img), Volume::new(g, 1, lab))
}

#[test]
fn overlay_is_readable_and_radiological() {
    let d = tempfile::tempdir().unwrap();
    let (img, lab) = phantom();
    let names = BTreeMap::from([(1, "liver".to_string()), (2, "spleen".to_string())]);
    let out = d.path().join("o.png");
    draw_overlay(&img, Some(&lab), &names, None, &out).unwrap();
    let (w, h, px) = decode(&out);
    // Axial view: 80 mm (i) × 48 mm (j) → at least 360 px tall after enlarging.
    assert!(h >= 360 + 34, "{w}×{h}");
    assert!(w > 3 * 80, "{w}×{h}");
    // In the axial view (first panel, x from 28), the right-sided label 1 (i ≥ 30 of 40, i.e.
    // the patient's right) must be drawn on the viewer's left half.
    let red = |x: u32, y: u32| {
        let p = ((y * w + x) * 3) as usize;
        let (r, g, b) = (px[p] as i32, px[p + 1] as i32, px[p + 2] as i32);
        r > g + 40 && r > b + 40
    };
    // The tallest view (axial: 48 rows of 1 mm) is enlarged 8× to 384 ≥ 360 px; the axial view
    // is 80 mm wide (40 voxels of 2 mm), so 640 px.
    let (f, panel) = (8, 640);
    let mut left = 0;
    let mut right = 0;
    for y in 34..34 + 48 * f {
        for x in 28..28 + panel {
            if red(x, y) {
                if x < 28 + panel / 2 {
                    left += 1;
                } else {
                    right += 1;
                }
            }
        }
    }
    assert!(
        left > 100 && right == 0,
        "label 1 pixels left {left}, right {right}"
    );
}

#[test]
fn overlay_rejects_another_grid() {
    let d = tempfile::tempdir().unwrap();
    let (img, _) = phantom();
    let other = Volume::new(
        Geometry::from_affine([4, 4, 4], repux_volume::geometry::IDENTITY),
        1,
        vec![0.0; 64],
    );
    let out = d.path().join("o.png");
    let e = draw_overlay(&img, Some(&other), &BTreeMap::new(), None, &out).unwrap_err();
    assert!(e.to_string().contains("does not match"), "{e}");
    assert!(!out.exists());
}

#[test]
fn curves_have_the_documented_size() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("progress.png");
    let curves = Curves {
        losses: (1..=200)
            .map(|i| (i, 2.0 / (1.0 + i as f64 / 20.0)))
            .collect(),
        validations: vec![(100, vec![0.4, f64::NAN]), (200, vec![0.7, 0.5])],
        class_names: vec!["liver".into(), "spleen".into()],
        planned: 400,
    };
    draw_curves(&curves, &out).unwrap();
    let (w, h, px) = decode(&out);
    assert_eq!((w, h), repux_plot::CURVES_SIZE);
    // Something other than white was drawn in each half (axes, curves, text).
    let ink = |x0: u32, x1: u32| {
        (0..h)
            .flat_map(|y| (x0..x1).map(move |x| (x, y)))
            .filter(|&(x, y)| px[((y * w + x) * 3) as usize] < 128)
            .count()
    };
    assert!(ink(0, w / 2) > 1000 && ink(w / 2, w) > 1000);
    // A run that has not validated yet still draws.
    draw_curves(
        &Curves {
            validations: vec![],
            ..curves
        },
        &out,
    )
    .unwrap();
}

#[test]
fn qc_sheet_grid() {
    let d = tempfile::tempdir().unwrap();
    let (img, lab) = phantom();
    let src = d.path().join("case.nii.gz");
    let cases: Vec<QcCase> = (0..7)
        .map(|n| {
            let im = (n % 2 == 0).then_some(&img);
            QcCase::render(&format!("case_{n}"), n as f64 / 10.0, &lab, &lab, im, &src).unwrap()
        })
        .collect();
    let out = d.path().join("qc.png");
    draw_qc_sheet(&cases, &BTreeMap::new(), &out).unwrap();
    let (w, h, _) = decode(&out);
    // Five columns of 252 px, two rows of 278 px, header 40, one legend row.
    assert_eq!(w, 12 + 5 * 252);
    assert_eq!(h, 40 + 2 * 278 + 24 + 12);
    assert!(draw_qc_sheet(&[], &BTreeMap::new(), &out).is_err());
}
