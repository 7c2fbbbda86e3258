//! Resampling agrees with scipy.ndimage.map_coordinates (fixtures from
//! tools/scipy_resample_fixtures.py) at repux's pixel-centre coordinates.

use repux_prep::resample::{resample, Interp};

#[test]
fn matches_scipy() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/resample.json"
    ))
    .unwrap();
    let cases: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(cases.len(), 4);
    for c in &cases {
        let v = |k: &str| -> Vec<f64> { serde_json::from_value(c[k].clone()).unwrap() };
        let s = |k: &str| -> [usize; 3] { serde_json::from_value(c[k].clone()).unwrap() };
        let (shape, out) = (s("shape"), s("out_shape"));
        let data: Vec<f32> = v("data").iter().map(|&x| x as f32).collect();
        // Tolerance: data are ~N(0, 10); we compute in f32 (prefilter initialisation in f64),
        // scipy in f64. 1e-3 absolute is ~1e-4 of the data's scale.
        for (name, interp, tol) in [
            ("linear", [Interp::Linear; 3], 1e-4),
            ("cubic", [Interp::Cubic; 3], 1e-3),
            ("nearest", [Interp::Nearest; 3], 1e-5),
            (
                "separate_z",
                [Interp::Cubic, Interp::Cubic, Interp::Nearest],
                1e-3,
            ),
        ] {
            let ours = resample(&data, shape, out, interp);
            let theirs = v(name);
            assert_eq!(ours.len(), theirs.len());
            let worst = ours
                .iter()
                .zip(&theirs)
                .map(|(a, b)| (*a as f64 - b).abs())
                .fold(0.0, f64::max);
            assert!(
                worst <= tol,
                "{name} {shape:?}→{out:?}: max abs error {worst}"
            );
        }
    }
}
