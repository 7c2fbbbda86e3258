//! The qform: quaternion ↔ affine, evaluated in float32 when reading as nibabel does.

use crate::geometry::{column_norms, det3, orthogonalize, Affine};

pub(super) trait Real:
    Copy
    + std::ops::Mul<Output = Self>
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Div<Output = Self>
    + PartialOrd
{
    fn c(v: f64) -> Self;
    fn f(self) -> f64;
    fn sqrt(self) -> Self;
    fn eps() -> Self;
}

impl Real for f32 {
    fn c(v: f64) -> Self {
        v as f32
    }
    fn f(self) -> f64 {
        self as f64
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    fn eps() -> Self {
        f32::EPSILON
    }
}

impl Real for f64 {
    fn c(v: f64) -> Self {
        v
    }
    fn f(self) -> f64 {
        self
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    fn eps() -> Self {
        f64::EPSILON
    }
}

pub(super) fn qform_to_affine<T: Real>(bcd: [T; 3], pixdim: [T; 8], qoffset: [f64; 3]) -> Affine {
    let [x, y, z] = bcd;
    let one = T::c(1.0);
    let w2 = one - (x * x + y * y + z * z);
    let w = if w2 < T::c(0.0) { T::c(0.0) } else { w2.sqrt() };
    let nq = w * w + x * x + y * y + z * z;
    let r: [[T; 3]; 3] = if nq < T::eps() {
        [
            [one, T::c(0.0), T::c(0.0)],
            [T::c(0.0), one, T::c(0.0)],
            [T::c(0.0), T::c(0.0), one],
        ]
    } else {
        let s = T::c(2.0) / nq;
        let (xs, ys, zs) = (x * s, y * s, z * s);
        let (wx, wy, wz) = (w * xs, w * ys, w * zs);
        let (xx, xy, xz) = (x * xs, x * ys, x * zs);
        let (yy, yz, zz) = (y * ys, y * zs, z * zs);
        [
            [one - (yy + zz), xy - wz, xz + wy],
            [xy + wz, one - (xx + zz), yz - wx],
            [xz - wy, yz + wx, one - (xx + yy)],
        ]
    };
    let qfac = if pixdim[0].f() == -1.0 {
        T::c(-1.0)
    } else {
        one
    };
    let abs = |v: T| if v < T::c(0.0) { T::c(0.0) - v } else { v };
    let vox = [abs(pixdim[1]), abs(pixdim[2]), abs(pixdim[3]) * qfac];
    let mut a = [[0.0; 4]; 4];
    for i in 0..3 {
        for j in 0..3 {
            a[i][j] = (r[i][j] * vox[j]).f();
        }
        a[i][3] = T::c(qoffset[i]).f();
    }
    a[3][3] = 1.0;
    a
}

/// Quaternion (b, c, d), qfac and zooms for an affine's rotation part (nibabel's `set_qform`
/// without its SVD: the nearest orthogonal matrix by polar iteration).
pub(super) fn affine_to_qform(a: &Affine) -> ([f64; 3], f64, [f64; 3]) {
    let zooms = column_norms(a);
    let mut r = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            r[i][j] = a[i][j] / if zooms[j] == 0.0 { 1.0 } else { zooms[j] };
        }
    }
    let mut qfac = 1.0;
    if det3(&r) < 0.0 {
        qfac = -1.0;
        for row in r.iter_mut() {
            row[2] = -row[2];
        }
    }
    let r = orthogonalize(&r).unwrap_or([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
    // Shepperd's method, choosing w ≥ 0 as the NIfTI convention requires.
    let tr = r[0][0] + r[1][1] + r[2][2];
    let (w, x, y, z);
    if tr > 0.0 {
        let s = (tr + 1.0).sqrt() * 2.0;
        w = 0.25 * s;
        x = (r[2][1] - r[1][2]) / s;
        y = (r[0][2] - r[2][0]) / s;
        z = (r[1][0] - r[0][1]) / s;
    } else if r[0][0] > r[1][1] && r[0][0] > r[2][2] {
        let s = (1.0 + r[0][0] - r[1][1] - r[2][2]).sqrt() * 2.0;
        w = (r[2][1] - r[1][2]) / s;
        x = 0.25 * s;
        y = (r[0][1] + r[1][0]) / s;
        z = (r[0][2] + r[2][0]) / s;
    } else if r[1][1] > r[2][2] {
        let s = (1.0 + r[1][1] - r[0][0] - r[2][2]).sqrt() * 2.0;
        w = (r[0][2] - r[2][0]) / s;
        x = (r[0][1] + r[1][0]) / s;
        y = 0.25 * s;
        z = (r[1][2] + r[2][1]) / s;
    } else {
        let s = (1.0 + r[2][2] - r[0][0] - r[1][1]).sqrt() * 2.0;
        w = (r[1][0] - r[0][1]) / s;
        x = (r[0][2] + r[2][0]) / s;
        y = (r[1][2] + r[2][1]) / s;
        z = 0.25 * s;
    }
    let sgn = if w < 0.0 { -1.0 } else { 1.0 };
    ([x * sgn, y * sgn, z * sgn], qfac, zooms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qform_roundtrip_through_quaternion() {
        // An oblique LPS-like affine with negative determinant.
        let (c, s) = (0.3f64.cos(), 0.3f64.sin());
        let a = [
            [-0.8 * c, 0.7 * s, 0.0, 10.0],
            [-0.8 * s, -0.7 * c, 0.0, 20.0],
            [0.0, 0.0, 2.5, -5.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let (q, qfac, z) = affine_to_qform(&a);
        let pix = [qfac, z[0], z[1], z[2], 0.0, 0.0, 0.0, 0.0];
        let back = qform_to_affine::<f64>(q, pix, [10.0, 20.0, -5.0]);
        for r in 0..3 {
            for k in 0..4 {
                assert!((back[r][k] - a[r][k]).abs() < 1e-12, "{back:?} vs {a:?}");
            }
        }
    }
}
