//! Helpers the network test binaries share: the fixtures tools/ wrote, and the error measure.

use std::path::{Path, PathBuf};

/// A file of tests/fixtures.
pub fn fx(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Shape and values of a fixture `.npy`.
pub fn npy(name: &str) -> (Vec<usize>, Vec<f32>) {
    let a = repux_volume::npy::read(&fx(name)).unwrap();
    (a.shape, a.data)
}

/// ‖a − b‖₂ / ‖b‖₂
pub fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}
