//! Metrics against scipy (tools/metric_fixtures.py, MONAI's definitions) on small volumes with
//! anisotropic spacing; the EDT against brute force on random shapes.

use proptest::prelude::*;
use repux_eval::class_metrics;
use repux_eval::edt::{squared_edt, squared_edt_at};

#[test]
fn matches_scipy_fixtures() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/metrics.json"
    ))
    .unwrap();
    let cases: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let mut checked = 0;
    for c in &cases {
        let shape: [usize; 3] = serde_json::from_value(c["shape"].clone()).unwrap();
        let spacing: [f64; 3] = serde_json::from_value(c["spacing"].clone()).unwrap();
        let pred: Vec<i64> = serde_json::from_value(c["pred"].clone()).unwrap();
        let reference: Vec<i64> = serde_json::from_value(c["ref"].clone()).unwrap();
        for (class, want) in c["classes"].as_object().unwrap() {
            let k: i64 = class.parse().unwrap();
            let pm: Vec<bool> = pred.iter().map(|&v| v == k).collect();
            let rm: Vec<bool> = reference.iter().map(|&v| v == k).collect();
            let m = class_metrics(&pm, &rm, shape, spacing, c["tolerance"].as_f64().unwrap());
            assert_eq!(
                (m.TP, m.FP, m.FN),
                (
                    want["TP"].as_u64().unwrap(),
                    want["FP"].as_u64().unwrap(),
                    want["FN"].as_u64().unwrap()
                )
            );
            for (key, got) in [
                ("Dice", m.Dice),
                ("IoU", m.IoU),
                ("HD95", m.HD95),
                ("ASD", m.ASD),
                ("NSD", m.NSD),
            ] {
                if let Some(w) = want.get(key).and_then(|v| v.as_f64()) {
                    // Tolerance: both sides are exact in f64 up to summation order.
                    assert!(
                        (got - w).abs() <= 1e-9 * w.abs().max(1.0),
                        "class {class} {key}: {got} vs scipy {w}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 40, "only {checked} values compared");
}

fn brute(seed: &[bool], shape: [usize; 3], sp: [f64; 3]) -> Vec<f64> {
    let [d, h, w] = shape;
    let pts: Vec<[usize; 3]> = (0..d * h * w)
        .filter(|&i| seed[i])
        .map(|i| [i / (h * w), (i / w) % h, i % w])
        .collect();
    (0..d * h * w)
        .map(|i| {
            let p = [i / (h * w), (i / w) % h, i % w];
            pts.iter()
                .map(|q| {
                    (0..3)
                        .map(|a| ((p[a] as f64 - q[a] as f64) * sp[a]).powi(2))
                        .sum::<f64>()
                })
                .fold(f64::INFINITY, f64::min)
        })
        .collect()
}

#[test]
fn edt_without_seeds_is_infinite() {
    assert!(squared_edt(&[false; 210], [5, 7, 6], [2.0, 0.7, 1.3])
        .iter()
        .all(|v| v.is_infinite()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn edt_equals_brute_force(d in 1usize..8, h in 1usize..8, w in 1usize..8, sx in 0.3f64..3.0, sy in 0.3f64..3.0, sz in 0.3f64..3.0, bits in prop::collection::vec(any::<bool>(), 343)) {
        let n = d * h * w;
        // Sparse seeds: keep roughly one in eight.
        let seed: Vec<bool> = (0..n).map(|i| bits[i] && bits[(i * 7 + 3) % 343] && bits[(i * 13 + 5) % 343]).collect();
        let a = squared_edt(&seed, [d, h, w], [sx, sy, sz]);
        let b = brute(&seed, [d, h, w], [sx, sy, sz]);
        // The query-restricted variant agrees at the queried voxels (here: every other voxel).
        let query: Vec<bool> = (0..n).map(|i| bits[(i * 5 + 1) % 343]).collect();
        let at = squared_edt_at(&seed, [d, h, w], [sx, sy, sz], &query);
        let want: Vec<f64> = b.iter().zip(&query).filter(|(_, q)| **q).map(|(v, _)| *v).collect();
        prop_assert_eq!(at.len(), want.len());
        for (x, y) in at.iter().zip(&want) {
            prop_assert!((x == y) || (x - y).abs() <= 1e-9 * y.abs().max(1.0), "at: {} vs {}", x, y);
        }
        for (x, y) in a.iter().zip(&b) {
            // Tolerance: exact arithmetic on the same squared distances, 1e-9 relative.
            prop_assert!((x == y) || (x - y).abs() <= 1e-9 * y.abs().max(1.0), "{} vs {}", x, y);
        }
    }
}
