//! Voxel grids in world space: the 4×4 voxel→world affine (RAS+, millimetres, exactly as nibabel
//! reports it), orientation codes, and exact reorientation by axis permutation and flips.
//!
//! Invariant: every operation here keeps the world position of every voxel: for a voxel at index
//! `n` in the result, `affine_new · n == affine_old · old_index(n)` exactly (the arithmetic is
//! additions of whole columns, so it is exact up to the last bit of one f64 addition).

use serde::{Deserialize, Serialize};

/// Row-major 4×4 voxel→world matrix, RAS+ world coordinates in mm.
pub type Affine = [[f64; 4]; 4];

/// Identity affine.
pub const IDENTITY: Affine = [
    [1.0, 0.0, 0.0, 0.0],
    [0.0, 1.0, 0.0, 0.0],
    [0.0, 0.0, 1.0, 0.0],
    [0.0, 0.0, 0.0, 1.0],
];

/// Shape, voxel size and position of a 3-D grid. Travels with every array in repux.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Geometry {
    /// Voxels along the image's (i, j, k) axes.
    pub shape: [usize; 3],
    /// Voxel size along (i, j, k) in mm (NIfTI: `pixdim[1..4]`, as nibabel's `get_zooms`).
    pub spacing: [f64; 3],
    /// Voxel (i, j, k, 1) → world (x, y, z, 1), RAS+.
    pub affine: Affine,
}

impl Geometry {
    /// A grid whose spacing is read off the affine's column norms.
    pub fn from_affine(shape: [usize; 3], affine: Affine) -> Self {
        Geometry {
            shape,
            spacing: column_norms(&affine),
            affine,
        }
    }

    pub fn voxels(&self) -> usize {
        self.shape.iter().product()
    }

    /// Orientation code such as `"RAS"` or `"LPS"` (nibabel's `aff2axcodes`).
    pub fn orientation(&self) -> String {
        axcodes(&self.affine).iter().collect()
    }

    /// World position of voxel index `ijk`.
    pub fn world(&self, ijk: [f64; 3]) -> [f64; 3] {
        let a = &self.affine;
        let mut out = [0.0; 3];
        for (r, o) in out.iter_mut().enumerate() {
            *o = a[r][0] * ijk[0] + a[r][1] * ijk[1] + a[r][2] * ijk[2] + a[r][3];
        }
        out
    }

    /// Largest absolute difference between the affines, and whether shapes agree.
    pub fn max_affine_diff(&self, other: &Geometry) -> f64 {
        let mut m: f64 = 0.0;
        for r in 0..4 {
            for c in 0..4 {
                m = m.max((self.affine[r][c] - other.affine[r][c]).abs());
            }
        }
        m
    }

    /// How data on this grid lands on grid `g`: `None` when the grids agree (shape equal,
    /// affines within `tol` mm), else the exact reorientation (axis permutation and flips) that
    /// puts the same voxel centres in `g`'s axis order — as a label NIfTI made by one tool holds
    /// for a DICOM series read by another. Otherwise a description of the mismatch.
    pub fn reorientation_onto(
        &self,
        g: &Geometry,
        tol: f64,
    ) -> Result<Option<Reorientation>, String> {
        if self.shape == g.shape && self.max_affine_diff(g) <= tol {
            return Ok(None);
        }
        if let Ok(ro) = self.reorientation_to(&g.orientation()) {
            if ro.to_shape() == g.shape && ro.apply_geometry(self).max_affine_diff(g) <= tol {
                return Ok(Some(ro));
            }
        }
        let (mut a, mut b) = (self.shape, g.shape);
        a.sort();
        b.sort();
        if a != b {
            return Err(format!(
                "shape {:?} does not match {:?}",
                self.shape, g.shape
            ));
        }
        Err(format!(
            "affine differs by up to {:.3e} mm (tolerance {tol:e}), and no reordering of its axes puts its voxels on the {:?} {} grid",
            self.max_affine_diff(g),
            g.shape,
            g.orientation()
        ))
    }

    /// The permutation/flip that takes this grid to orientation `target` (e.g. `"RAS"`).
    pub fn reorientation_to(&self, target: &str) -> Result<Reorientation, String> {
        let target = parse_codes(target)?;
        let current = axcodes(&self.affine);
        // For every current axis i: which target position it goes to and whether it flips.
        let mut perm = [usize::MAX; 3];
        let mut flip = [false; 3];
        for (i, &c) in current.iter().enumerate() {
            let (axis, _) = code_axis(c);
            let pos = target
                .iter()
                .position(|&t| code_axis(t).0 == axis)
                .ok_or_else(|| format!("target orientation lacks the axis of {c}"))?;
            perm[i] = pos;
            flip[i] = c != target[pos];
        }
        Ok(Reorientation {
            from_shape: self.shape,
            perm,
            flip,
        })
    }
}

/// An exact reorientation: old axis `i` becomes new axis `perm[i]`, reversed if `flip[i]`.
/// It records how to undo itself ([`Reorientation::inverse`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reorientation {
    pub from_shape: [usize; 3],
    pub perm: [usize; 3],
    pub flip: [bool; 3],
}

impl Reorientation {
    pub fn is_identity(&self) -> bool {
        self.perm == [0, 1, 2] && self.flip == [false; 3]
    }

    pub fn to_shape(&self) -> [usize; 3] {
        let mut s = [0; 3];
        for i in 0..3 {
            s[self.perm[i]] = self.from_shape[i];
        }
        s
    }

    /// The new grid: each new column is ± an old column; flipped axes move the origin to the
    /// old far end.
    pub fn apply_geometry(&self, g: &Geometry) -> Geometry {
        let mut aff = g.affine;
        let mut spacing = [0.0; 3];
        for i in 0..3 {
            let j = self.perm[i];
            let s = if self.flip[i] { -1.0 } else { 1.0 };
            for (row, src) in aff.iter_mut().zip(&g.affine) {
                row[j] = s * src[i];
            }
            spacing[j] = g.spacing[i];
        }
        for i in 0..3 {
            if self.flip[i] {
                let n = (g.shape[i] as f64) - 1.0;
                for (row, src) in aff.iter_mut().zip(&g.affine).take(3) {
                    row[3] += n * src[i];
                }
            }
        }
        Geometry {
            shape: self.to_shape(),
            spacing,
            affine: aff,
        }
    }

    /// Reorders one channel (C-order, last axis fastest) of exactly `from_shape` voxels.
    ///
    /// # Panics
    /// When `data` does not hold `from_shape`'s voxel count: every caller slices one channel of
    /// a volume of that shape, so another length is a bug, and filling the output from a slice of
    /// another length would leave values unwritten.
    pub fn apply_data<T: Copy + Send + Sync>(&self, data: &[T]) -> Vec<T> {
        let [n0, n1, n2] = self.from_shape;
        assert_eq!(
            data.len(),
            n0 * n1 * n2,
            "Reorientation::apply_data: {} values for a {:?} channel",
            data.len(),
            self.from_shape
        );
        let ns = self.to_shape();
        // Strides of the new array, indexed by old axis, with sign and base offset for flips.
        let new_strides = [ns[1] * ns[2], ns[2], 1];
        let mut stride = [0isize; 3];
        let mut base = 0isize;
        for i in 0..3 {
            let st = new_strides[self.perm[i]] as isize;
            if self.flip[i] {
                stride[i] = -st;
                base += st * (self.from_shape[i] as isize - 1);
            } else {
                stride[i] = st;
            }
        }
        let mut out: Vec<T> = Vec::with_capacity(data.len());
        let spare = out.spare_capacity_mut();
        for a in 0..n0 {
            for b in 0..n1 {
                let row = &data[(a * n1 + b) * n2..(a * n1 + b + 1) * n2];
                let o = base + a as isize * stride[0] + b as isize * stride[1];
                for (c, &v) in row.iter().enumerate() {
                    spare[(o + c as isize * stride[2]) as usize].write(v);
                }
            }
        }
        // SAFETY: the map old index → new index is a bijection on 0..len, so every slot of
        // `out` was written exactly once above.
        unsafe { out.set_len(data.len()) };
        out
    }

    pub fn inverse(&self) -> Reorientation {
        let ns = self.to_shape();
        let mut perm = [0; 3];
        let mut flip = [false; 3];
        for i in 0..3 {
            perm[self.perm[i]] = i;
            flip[self.perm[i]] = self.flip[i];
        }
        Reorientation {
            from_shape: ns,
            perm,
            flip,
        }
    }
}

fn parse_codes(s: &str) -> Result<[char; 3], String> {
    let v: Vec<char> = s.trim().to_ascii_uppercase().chars().collect();
    if v.len() != 3 {
        return Err(format!(
            "orientation code {s:?} must have three letters, e.g. RAS or LPS"
        ));
    }
    let mut seen = [false; 3];
    for &c in &v {
        let (axis, _) = code_axis(c);
        if axis == usize::MAX {
            return Err(format!(
                "orientation code {s:?}: {c} is not one of R L A P S I"
            ));
        }
        if seen[axis] {
            return Err(format!("orientation code {s:?} names one axis twice"));
        }
        seen[axis] = true;
    }
    Ok([v[0], v[1], v[2]])
}

/// World axis (0 = x, 1 = y, 2 = z) and direction sign for an orientation letter.
fn code_axis(c: char) -> (usize, i8) {
    match c {
        'R' => (0, 1),
        'L' => (0, -1),
        'A' => (1, 1),
        'P' => (1, -1),
        'S' => (2, 1),
        'I' => (2, -1),
        _ => (usize::MAX, 0),
    }
}

/// Euclidean norms of the first three columns (voxel sizes implied by the affine).
pub fn column_norms(a: &Affine) -> [f64; 3] {
    let mut z = [0.0; 3];
    for (c, zc) in z.iter_mut().enumerate() {
        *zc = (0..3).map(|r| a[r][c] * a[r][c]).sum::<f64>().sqrt();
    }
    z
}

pub(crate) fn det3(m: &[[f64; 3]; 3]) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

fn inv3(m: &[[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let d = det3(m);
    if d.abs() < 1e-300 || !d.is_finite() {
        return None;
    }
    let mut r = [[0.0; 3]; 3];
    for (i, row) in r.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            let (a, b) = ((j + 1) % 3, (j + 2) % 3);
            let (c, e) = ((i + 1) % 3, (i + 2) % 3);
            *v = (m[a][c] * m[b][e] - m[a][e] * m[b][c]) / d;
        }
    }
    Some(r)
}

/// Nearest orthogonal matrix (polar factor) by Newton iteration `R ← (R + R⁻ᵀ)/2`; this is what
/// nibabel's SVD step (`P @ Qs`) computes for a non-singular matrix.
pub(crate) fn orthogonalize(m: &[[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let mut r = *m;
    for _ in 0..100 {
        let inv = inv3(&r)?;
        let mut next = [[0.0; 3]; 3];
        let mut delta: f64 = 0.0;
        for i in 0..3 {
            for j in 0..3 {
                next[i][j] = 0.5 * (r[i][j] + inv[j][i]);
                delta = delta.max((next[i][j] - r[i][j]).abs());
            }
        }
        r = next;
        if delta < 1e-15 {
            break;
        }
    }
    Some(r)
}

/// Orientation letters of the voxel axes, as nibabel's `aff2axcodes(aff)` (via `io_orientation`):
/// normalise columns, take the nearest orthogonal matrix, then greedily give each voxel axis (in
/// order) the world axis it points along most, removing that world axis from the later choices.
pub fn axcodes(a: &Affine) -> [char; 3] {
    let mut rs = [[0.0; 3]; 3];
    let z = column_norms(a);
    for r in 0..3 {
        for c in 0..3 {
            rs[r][c] = a[r][c] / if z[c] == 0.0 { 1.0 } else { z[c] };
        }
    }
    let mut r = orthogonalize(&rs).unwrap_or(rs);
    let mut out = ['?'; 3];
    for (in_ax, o) in out.iter_mut().enumerate() {
        let col = [r[0][in_ax], r[1][in_ax], r[2][in_ax]];
        if col.iter().all(|v| v.abs() < 1e-8) {
            continue;
        }
        let mut out_ax = 0;
        for k in 1..3 {
            if col[k].abs() > col[out_ax].abs() {
                out_ax = k;
            }
        }
        let neg = col[out_ax] < 0.0;
        *o = match (out_ax, neg) {
            (0, false) => 'R',
            (0, true) => 'L',
            (1, false) => 'A',
            (1, true) => 'P',
            (2, false) => 'S',
            _ => 'I',
        };
        r[out_ax] = [0.0; 3];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lps(shape: [usize; 3]) -> Geometry {
        let aff = [
            [-0.8, 0.0, 0.0, 100.0],
            [0.0, -0.7, 0.0, 50.0],
            [0.0, 0.0, 2.5, -30.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        Geometry::from_affine(shape, aff)
    }

    #[test]
    fn codes_of_common_affines() {
        assert_eq!(
            Geometry::from_affine([2, 2, 2], IDENTITY).orientation(),
            "RAS"
        );
        assert_eq!(lps([2, 2, 2]).orientation(), "LPS");
        // Axis permutation: i → z, j → x, k → y.
        let aff = [
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, -1.0, 0.0],
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        assert_eq!(axcodes(&aff), ['S', 'R', 'P']);
        // Slightly oblique still picks the dominant axis.
        let aff = [
            [0.99, 0.1, 0.0, 0.0],
            [-0.1, 0.99, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        assert_eq!(axcodes(&aff), ['R', 'A', 'S']);
    }

    #[test]
    fn reorientation_keeps_world_positions_and_inverts() {
        let g = lps([3, 4, 5]);
        let data: Vec<u32> = (0..60).collect();
        let ro = g.reorientation_to("RAS").unwrap();
        let g2 = ro.apply_geometry(&g);
        let d2 = ro.apply_data(&data);
        assert_eq!(g2.orientation(), "RAS");
        assert_eq!(g2.shape, [3, 4, 5]);
        // Every voxel keeps its world position.
        for i in 0..3 {
            for j in 0..4 {
                for k in 0..5 {
                    let v = d2[(i * 4 + j) * 5 + k];
                    let (oi, oj, ok) = ((v / 20) as f64, ((v / 5) % 4) as f64, (v % 5) as f64);
                    let w_new = g2.world([i as f64, j as f64, k as f64]);
                    let w_old = g.world([oi, oj, ok]);
                    for r in 0..3 {
                        assert!((w_new[r] - w_old[r]).abs() < 1e-12);
                    }
                }
            }
        }
        let back = ro.inverse();
        assert_eq!(back.apply_data(&d2), data);
        assert_eq!(back.apply_geometry(&g2), g);
    }

    #[test]
    fn permuted_reorientation() {
        let aff = [
            [0.0, 2.0, 0.0, 1.0],
            [0.0, 0.0, -3.0, 2.0],
            [1.5, 0.0, 0.0, 3.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let g = Geometry::from_affine([2, 3, 4], aff);
        let ro = g.reorientation_to("RAS").unwrap();
        let g2 = ro.apply_geometry(&g);
        assert_eq!(g2.orientation(), "RAS");
        assert_eq!(g2.shape, [3, 4, 2]);
        assert_eq!(g2.spacing, [2.0, 3.0, 1.5]);
        let data: Vec<u32> = (0..24).collect();
        let d2 = ro.apply_data(&data);
        assert_eq!(ro.inverse().apply_data(&d2), data);
        let longer =
            std::panic::catch_unwind(|| ro.apply_data(&[data.clone(), vec![0u32]].concat()));
        assert!(longer.is_err(), "a slice of another length is refused");
        // corner check: new voxel (0,0,0) sits where the old voxel that maps there sat
        let v = d2[0];
        let old = [(v / 12) as f64, ((v / 4) % 3) as f64, (v % 4) as f64];
        assert_eq!(g2.world([0.0, 0.0, 0.0]), g.world(old));
    }

    #[test]
    fn bad_codes_are_errors() {
        let g = lps([2, 2, 2]);
        assert!(g.reorientation_to("RAX").is_err());
        assert!(g.reorientation_to("RRS").is_err());
        assert!(g.reorientation_to("RA").is_err());
    }
}
