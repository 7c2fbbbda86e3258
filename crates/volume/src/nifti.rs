//! NIfTI-1 and NIfTI-2 reading (`.nii`, `.nii.gz`, `.hdr/.img`, gzipped pairs) and NIfTI-1
//! writing (`.nii`, `.nii.gz`).
//!
//! Why not the `nifti` crate: it reads NIfTI-1 only (no NIfTI-2), keeps `dim` as `u16` so a
//! negative dimension silently becomes a huge one, and builds its affine through nalgebra without
//! nibabel's header fixes (|pixdim|, qfac ∉ {−1, 1} → 1). Every malformed header must become an
//! error naming the file, so the ~150 lines of header layout live here, in one code path for
//! both versions.
//!
//! Geometry follows nibabel exactly: `get_best_affine` (sform if `sform_code != 0`, else qform if
//! `qform_code != 0`, else the centred base affine with x flipped), the qform evaluated in float32
//! as nibabel does, spacing = |pixdim[1..4]| (`get_zooms`).

use crate::error::{Error, ErrorKind, Result};
use crate::geometry::{column_norms, det3, orthogonalize, Affine, Geometry, Reorientation};
use crate::volume::{Stats, StatsAcc, Volume};
use rayon::prelude::*;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// On-disk voxel type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataType {
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
}

impl DataType {
    /// NIfTI `datatype` code → type, or the error naming what the code is.
    pub fn from_code(code: i64) -> Result<DataType, ErrorKind> {
        Ok(match code {
            2 => DataType::U8,
            4 => DataType::I16,
            8 => DataType::I32,
            16 => DataType::F32,
            64 => DataType::F64,
            256 => DataType::I8,
            512 => DataType::U16,
            768 => DataType::U32,
            1024 => DataType::I64,
            1280 => DataType::U64,
            _ => {
                let name = match code {
                    0 => "unknown",
                    1 => "binary",
                    32 => "complex64",
                    128 => "RGB",
                    1536 => "float128",
                    1792 => "complex128",
                    2048 => "complex256",
                    2304 => "RGBA",
                    _ => "not a NIfTI datatype",
                };
                return Err(ErrorKind::Datatype {
                    code,
                    name: name.to_string(),
                });
            }
        })
    }

    pub fn code(self) -> i16 {
        match self {
            DataType::U8 => 2,
            DataType::I16 => 4,
            DataType::I32 => 8,
            DataType::F32 => 16,
            DataType::F64 => 64,
            DataType::I8 => 256,
            DataType::U16 => 512,
            DataType::U32 => 768,
            DataType::I64 => 1024,
            DataType::U64 => 1280,
        }
    }

    /// numpy's name for the type (what nibabel's `get_data_dtype()` prints).
    pub fn name(self) -> &'static str {
        match self {
            DataType::U8 => "uint8",
            DataType::I8 => "int8",
            DataType::I16 => "int16",
            DataType::U16 => "uint16",
            DataType::I32 => "int32",
            DataType::U32 => "uint32",
            DataType::I64 => "int64",
            DataType::U64 => "uint64",
            DataType::F32 => "float32",
            DataType::F64 => "float64",
        }
    }

    pub fn size(self) -> usize {
        match self {
            DataType::U8 | DataType::I8 => 1,
            DataType::I16 | DataType::U16 => 2,
            DataType::I32 | DataType::U32 | DataType::F32 => 4,
            DataType::I64 | DataType::U64 | DataType::F64 => 8,
        }
    }

    /// The smallest unsigned type for a label map whose largest label is `max_label`.
    pub fn for_labels(max_label: u32) -> DataType {
        if max_label <= u8::MAX as u32 {
            DataType::U8
        } else if max_label <= u16::MAX as u32 {
            DataType::U16
        } else {
            DataType::U32
        }
    }

    /// Decodes element `i` of `b` (raw bytes of this type) to f64.
    #[inline]
    pub(crate) fn get(self, b: &[u8], i: usize, le: bool) -> f64 {
        macro_rules! rd {
            ($t:ty, $n:expr) => {{
                let mut a = [0u8; $n];
                a.copy_from_slice(&b[i * $n..i * $n + $n]);
                (if le {
                    <$t>::from_le_bytes(a)
                } else {
                    <$t>::from_be_bytes(a)
                }) as f64
            }};
        }
        match self {
            DataType::U8 => b[i] as f64,
            DataType::I8 => b[i] as i8 as f64,
            DataType::I16 => rd!(i16, 2),
            DataType::U16 => rd!(u16, 2),
            DataType::I32 => rd!(i32, 4),
            DataType::U32 => rd!(u32, 4),
            DataType::I64 => rd!(i64, 8),
            DataType::U64 => rd!(u64, 8),
            DataType::F32 => rd!(f32, 4),
            DataType::F64 => rd!(f64, 8),
        }
    }
}

/// The header fields repux uses, widened to NIfTI-2's types for both versions.
#[derive(Clone, Debug, PartialEq)]
pub struct NiftiHeader {
    pub version: u8,
    pub little_endian: bool,
    /// `true` for `.nii` (magic `n+1`/`n+2`), `false` for a `.hdr/.img` pair.
    pub single_file: bool,
    pub dim: [i64; 8],
    pub datatype: i64,
    pub pixdim: [f64; 8],
    pub vox_offset: f64,
    pub scl_slope: f64,
    pub scl_inter: f64,
    pub qform_code: i64,
    pub sform_code: i64,
    /// quatern_b, c, d (kept as stored: float32 in NIfTI-1).
    pub quatern: [f64; 3],
    pub qoffset: [f64; 3],
    pub srow: [[f64; 4]; 3],
}

pub const N1_SIZE: usize = 348;
pub const N2_SIZE: usize = 540;

struct Rd<'a> {
    b: &'a [u8],
    le: bool,
}

impl Rd<'_> {
    fn arr<const N: usize>(&self, o: usize) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.b[o..o + N]);
        if !self.le {
            a.reverse();
        }
        a
    }
    fn i16(&self, o: usize) -> i64 {
        i16::from_le_bytes(self.arr(o)) as i64
    }
    fn i32(&self, o: usize) -> i64 {
        i32::from_le_bytes(self.arr(o)) as i64
    }
    fn i64(&self, o: usize) -> i64 {
        i64::from_le_bytes(self.arr(o))
    }
    fn f32(&self, o: usize) -> f64 {
        f32::from_le_bytes(self.arr(o)) as f64
    }
    fn f64(&self, o: usize) -> f64 {
        f64::from_le_bytes(self.arr(o))
    }
}

/// Parses a NIfTI-1 or NIfTI-2 header from the first bytes of a file (fuzzed: never panics).
pub fn parse_header(b: &[u8]) -> Result<NiftiHeader, String> {
    if b.len() < 4 {
        return Err(format!(
            "file is {} bytes long, too short for a NIfTI header",
            b.len()
        ));
    }
    let raw = [b[0], b[1], b[2], b[3]];
    let (version, le) = match (i32::from_le_bytes(raw), i32::from_be_bytes(raw)) {
        (348, _) => (1, true),
        (540, _) => (2, true),
        (_, 348) => (1, false),
        (_, 540) => (2, false),
        (v, _) => {
            return Err(format!(
                "sizeof_hdr is {v}, not 348 (NIfTI-1) or 540 (NIfTI-2): not a NIfTI file"
            ))
        }
    };
    let need = if version == 1 { N1_SIZE } else { N2_SIZE };
    if b.len() < need {
        return Err(format!("header is truncated: {} of {need} bytes", b.len()));
    }
    let r = Rd { b, le };
    let mut h = NiftiHeader {
        version,
        little_endian: le,
        single_file: true,
        dim: [0; 8],
        datatype: 0,
        pixdim: [0.0; 8],
        vox_offset: 0.0,
        scl_slope: 0.0,
        scl_inter: 0.0,
        qform_code: 0,
        sform_code: 0,
        quatern: [0.0; 3],
        qoffset: [0.0; 3],
        srow: [[0.0; 4]; 3],
    };
    if version == 1 {
        let magic = &b[344..348];
        h.single_file = match magic {
            b"n+1\0" => true,
            b"ni1\0" => false,
            _ => return Err(
                "NIfTI-1 magic is missing (an ANALYZE 7.5 header?): expected \"n+1\" or \"ni1\""
                    .into(),
            ),
        };
        for i in 0..8 {
            h.dim[i] = r.i16(40 + 2 * i);
            h.pixdim[i] = r.f32(76 + 4 * i);
        }
        h.datatype = r.i16(70);
        h.vox_offset = r.f32(108);
        h.scl_slope = r.f32(112);
        h.scl_inter = r.f32(116);
        h.qform_code = r.i16(252);
        h.sform_code = r.i16(254);
        for i in 0..3 {
            h.quatern[i] = r.f32(256 + 4 * i);
            h.qoffset[i] = r.f32(268 + 4 * i);
            for c in 0..4 {
                h.srow[i][c] = r.f32(280 + 16 * i + 4 * c);
            }
        }
    } else {
        let magic = &b[4..12];
        h.single_file = match magic {
            b"n+2\0\r\n\x1a\n" => true,
            b"ni2\0\r\n\x1a\n" => false,
            _ => {
                return Err(
                    "NIfTI-2 magic is missing or damaged: expected \"n+2\\0\\r\\n\\x1a\\n\"".into(),
                )
            }
        };
        h.datatype = r.i16(12);
        for i in 0..8 {
            h.dim[i] = r.i64(16 + 8 * i);
            h.pixdim[i] = r.f64(104 + 8 * i);
        }
        h.vox_offset = r.i64(168) as f64;
        h.scl_slope = r.f64(176);
        h.scl_inter = r.f64(184);
        h.qform_code = r.i32(344);
        h.sform_code = r.i32(348);
        for i in 0..3 {
            h.quatern[i] = r.f64(352 + 8 * i);
            h.qoffset[i] = r.f64(376 + 8 * i);
            for c in 0..4 {
                h.srow[i][c] = r.f64(400 + 32 * i + 8 * c);
            }
        }
    }
    h.validate()?;
    Ok(h)
}

impl NiftiHeader {
    fn validate(&self) -> Result<(), String> {
        let nd = self.dim[0];
        if !(1..=7).contains(&nd) {
            return Err(format!(
                "dim[0] = {nd}: the number of dimensions must be 1 to 7"
            ));
        }
        for i in 1..=nd as usize {
            if self.dim[i] < 1 {
                return Err(format!(
                    "dim[{i}] = {}: every dimension must be at least 1",
                    self.dim[i]
                ));
            }
        }
        let mut n: u64 = 1;
        for i in 1..=nd as usize {
            n = n
                .checked_mul(self.dim[i] as u64)
                .filter(|&n| n <= 1 << 40)
                .ok_or("the dimensions multiply to more than 2^40 voxels")?;
        }
        if !self.vox_offset.is_finite() || self.vox_offset < 0.0 {
            return Err(format!(
                "vox_offset = {} is not a valid byte offset",
                self.vox_offset
            ));
        }
        let hsize = if self.version == 1 { N1_SIZE } else { N2_SIZE } as f64;
        if self.single_file && self.vox_offset < hsize {
            return Err(format!(
                "vox_offset = {} lies inside the {hsize}-byte header",
                self.vox_offset
            ));
        }
        if self.vox_offset.fract() != 0.0 {
            return Err(format!(
                "vox_offset = {} is not a whole number of bytes",
                self.vox_offset
            ));
        }
        Ok(())
    }

    /// Data shape as nibabel reports it (`dim[1..=dim[0]]`).
    pub fn shape(&self) -> Vec<usize> {
        (1..=self.dim[0] as usize)
            .map(|i| self.dim[i] as usize)
            .collect()
    }

    /// Spatial shape (padded with 1) and channel count (product of dims 4 and up).
    pub fn spatial_and_channels(&self) -> ([usize; 3], usize) {
        let s = self.shape();
        let sp = [
            s.first().copied().unwrap_or(1),
            s.get(1).copied().unwrap_or(1),
            s.get(2).copied().unwrap_or(1),
        ];
        let ch = s.iter().skip(3).product::<usize>();
        (sp, ch)
    }

    /// nibabel's `get_zooms()[:3]` after its header fixes (absolute values), padded with 1.
    pub fn spacing(&self) -> [f64; 3] {
        let nd = self.dim[0] as usize;
        let mut z = [1.0; 3];
        for (i, zi) in z.iter_mut().enumerate() {
            if i < nd {
                *zi = self.pixdim[i + 1].abs();
            }
        }
        z
    }

    /// `(slope, inter)` as nibabel applies them; slope 0 or non-finite means "no scaling".
    pub fn scaling(&self) -> Result<(f64, f64), String> {
        if self.scl_slope == 0.0 || !self.scl_slope.is_finite() {
            return Ok((1.0, 0.0));
        }
        if !self.scl_inter.is_finite() {
            return Err(format!(
                "valid scl_slope but invalid scl_inter {}",
                self.scl_inter
            ));
        }
        Ok((self.scl_slope, self.scl_inter))
    }

    /// nibabel's `get_best_affine()`.
    pub fn affine(&self) -> Affine {
        if self.sform_code != 0 {
            let s = &self.srow;
            return [s[0], s[1], s[2], [0.0, 0.0, 0.0, 1.0]];
        }
        if self.qform_code != 0 {
            return self.qform_affine();
        }
        let (shape, _) = self.spatial_and_channels();
        let mut z = self.spacing();
        z[0] = -z[0];
        let mut a = [[0.0; 4]; 4];
        for i in 0..3 {
            a[i][i] = z[i];
            a[i][3] = -((shape[i] as f64 - 1.0) / 2.0) * z[i];
        }
        a[3][3] = 1.0;
        a
    }

    /// nibabel's `get_qform()`, evaluated in float32 as nibabel does for NIfTI-1 (numpy keeps the
    /// header's float32 through `fillpositive` and `quat2mat`); NIfTI-2 stores float64.
    pub fn qform_affine(&self) -> Affine {
        if self.version == 1 {
            qform_to_affine::<f32>(
                self.quatern.map(|v| v as f32),
                self.pixdim.map(|v| v as f32),
                self.qoffset,
            )
        } else {
            qform_to_affine::<f64>(self.quatern, self.pixdim, self.qoffset)
        }
    }
}

trait Real:
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

fn qform_to_affine<T: Real>(bcd: [T; 3], pixdim: [T; 8], qoffset: [f64; 3]) -> Affine {
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
fn affine_to_qform(a: &Affine) -> ([f64; 3], f64, [f64; 3]) {
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

/// A decoded NIfTI (or NRRD) file: the volume, its on-disk type and f64 statistics.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub volume: Volume,
    pub datatype: DataType,
    /// Full data shape as stored (nibabel's `img.shape`).
    pub shape: Vec<usize>,
    pub stats: Stats,
}

/// Reads a whole file, gunzipping when the name ends in `.gz`.
pub(crate) fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if raw.is_empty() {
        return Err(Error::invalid(path, "file is empty (0 bytes)"));
    }
    if path.to_string_lossy().to_ascii_lowercase().ends_with(".gz") {
        gunzip(path, &raw)
    } else {
        Ok(raw)
    }
}

pub(crate) fn gunzip(path: &Path, raw: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len() * 3);
    flate2::read::MultiGzDecoder::new(raw)
        .read_to_end(&mut out)
        .map_err(|e| Error::new(path, ErrorKind::Gzip(e)))?;
    Ok(out)
}

fn ends_with_ci(p: &Path, suffix: &str) -> bool {
    p.to_string_lossy().to_ascii_lowercase().ends_with(suffix)
}

/// The `.img` partner of a `.hdr` (keeping a `.gz`), or the `.hdr` of an `.img`.
fn partner(path: &Path, from: &str, to: &str) -> PathBuf {
    let s = path.to_string_lossy();
    let lower = s.to_ascii_lowercase();
    let gz = lower.ends_with(".gz");
    let stem_len = s.len() - from.len() - if gz { 3 } else { 0 };
    let mut out = s[..stem_len].to_string();
    out.push_str(to);
    if gz {
        out.push_str(".gz");
    }
    PathBuf::from(out)
}

/// Reads a NIfTI-1/2 file (`.nii`, `.nii.gz`, `.hdr`, `.img`, optionally gzipped).
pub fn read_nifti(path: &Path) -> Result<Loaded> {
    let (hdr_path, img_path) = if ends_with_ci(path, ".hdr") || ends_with_ci(path, ".hdr.gz") {
        (path.to_path_buf(), Some(partner(path, ".hdr", ".img")))
    } else if ends_with_ci(path, ".img") || ends_with_ci(path, ".img.gz") {
        (partner(path, ".img", ".hdr"), Some(path.to_path_buf()))
    } else {
        (path.to_path_buf(), None)
    };
    let hbytes = read_maybe_gz(&hdr_path)?;
    let h = parse_header(&hbytes).map_err(|m| Error::header(&hdr_path, m))?;
    let (data_path, bytes) = match &img_path {
        Some(p) if !h.single_file => (p.clone(), read_maybe_gz(p)?),
        Some(_) => {
            return Err(Error::header(
                &hdr_path,
                "magic says single-file (.nii) but the file is a .hdr",
            ))
        }
        None if !h.single_file => {
            return Err(Error::header(
                &hdr_path,
                "magic says .hdr/.img pair but the file is not named .hdr",
            ));
        }
        None => (hdr_path.clone(), hbytes),
    };
    decode(&data_path, &h, &bytes)
}

fn decode(path: &Path, h: &NiftiHeader, bytes: &[u8]) -> Result<Loaded> {
    let dt = DataType::from_code(h.datatype).map_err(|k| Error::new(path, k))?;
    let (slope, inter) = h.scaling().map_err(|m| Error::header(path, m))?;
    let (spatial, channels) = h.spatial_and_channels();
    let n = spatial.iter().product::<usize>() * channels;
    let offset = h.vox_offset as u64;
    let expected = (n as u64).saturating_mul(dt.size() as u64);
    let available = (bytes.len() as u64).saturating_sub(offset);
    if available < expected {
        return Err(Error::new(
            path,
            ErrorKind::Truncated {
                offset,
                expected,
                available: bytes.len() as u64,
            },
        ));
    }
    let raw = &bytes[offset as usize..offset as usize + expected as usize];
    let geometry = Geometry {
        shape: spatial,
        spacing: h.spacing(),
        affine: h.affine(),
    };
    let (data, stats) = decode_fortran(raw, dt, h.little_endian, spatial, channels, slope, inter);
    Ok(Loaded {
        volume: Volume::new(geometry, channels, data),
        datatype: dt,
        shape: h.shape(),
        stats,
    })
}

/// Decodes Fortran-ordered (first axis fastest) raw voxels of `channels` × `spatial` into repux's
/// C × D × H × W layout, scaling and accumulating statistics in f64. Shared with NRRD.
pub(crate) fn decode_fortran(
    raw: &[u8],
    dt: DataType,
    le: bool,
    spatial: [usize; 3],
    channels: usize,
    slope: f64,
    inter: f64,
) -> (Vec<f32>, Stats) {
    let plane = spatial[0] * spatial[1];
    let per_channel = plane * spatial[2];
    let mut fortran = vec![0f32; per_channel * channels];
    let accs: Vec<StatsAcc> = fortran
        .par_chunks_mut(plane.max(1))
        .enumerate()
        .map(|(p, out)| {
            let base = p * plane.max(1);
            let mut acc = StatsAcc::default();
            for (i, o) in out.iter_mut().enumerate() {
                let v = dt.get(raw, base + i, le) * slope + inter;
                acc.push(v);
                *o = v as f32;
            }
            acc
        })
        .collect();
    let stats = accs
        .into_iter()
        .reduce(StatsAcc::merge)
        .unwrap_or_default()
        .finish();
    // Fortran order of (x, y, z) is C order of (z, y, x): reverse the axes per channel.
    let ro = Reorientation {
        from_shape: [spatial[2], spatial[1], spatial[0]],
        perm: [2, 1, 0],
        flip: [false; 3],
    };
    let mut data = Vec::with_capacity(fortran.len());
    for c in 0..channels {
        data.extend(ro.apply_data(&fortran[c * per_channel..(c + 1) * per_channel]));
    }
    (data, stats)
}

/// How a value is stored when writing.
fn encode(v: f32, dt: DataType, out: &mut Vec<u8>) -> Result<(), String> {
    macro_rules! int {
        ($t:ty) => {{
            let r = v.round();
            if !(r >= <$t>::MIN as f32 && r <= <$t>::MAX as f32) {
                return Err(format!("value {v} does not fit {}", dt.name()));
            }
            out.extend_from_slice(&(r as $t).to_le_bytes());
        }};
    }
    match dt {
        DataType::U8 => int!(u8),
        DataType::I8 => int!(i8),
        DataType::I16 => int!(i16),
        DataType::U16 => int!(u16),
        DataType::I32 => int!(i32),
        DataType::U32 => int!(u32),
        DataType::I64 => int!(i64),
        DataType::U64 => int!(u64),
        DataType::F32 => out.extend_from_slice(&v.to_le_bytes()),
        DataType::F64 => out.extend_from_slice(&(v as f64).to_le_bytes()),
    }
    Ok(())
}

/// Builds the 352 bytes (header + empty extension flag) of a NIfTI-1 single file.
pub fn make_header(g: &Geometry, channels: usize, dt: DataType) -> Result<Vec<u8>, String> {
    let mut b = vec![0u8; 352];
    let put = |b: &mut Vec<u8>, o: usize, v: &[u8]| b[o..o + v.len()].copy_from_slice(v);
    put(&mut b, 0, &348i32.to_le_bytes());
    b[38] = b'r';
    let mut dims = vec![g.shape[0], g.shape[1], g.shape[2]];
    if channels > 1 {
        dims.push(channels);
    }
    put(&mut b, 40, &(dims.len() as i16).to_le_bytes());
    for (i, &d) in dims.iter().enumerate() {
        let d16 = i16::try_from(d)
            .map_err(|_| format!("dimension {d} exceeds NIfTI-1's limit of 32767"))?;
        put(&mut b, 42 + 2 * i, &d16.to_le_bytes());
    }
    for i in dims.len()..7 {
        put(&mut b, 42 + 2 * i, &1i16.to_le_bytes());
    }
    put(&mut b, 70, &dt.code().to_le_bytes());
    put(&mut b, 72, &((dt.size() * 8) as i16).to_le_bytes());
    let (quat, qfac, zooms) = affine_to_qform(&g.affine);
    let pixdim = [
        qfac as f32,
        zooms[0] as f32,
        zooms[1] as f32,
        zooms[2] as f32,
        1.0,
        1.0,
        1.0,
        1.0,
    ];
    for (i, p) in pixdim.iter().enumerate() {
        put(&mut b, 76 + 4 * i, &p.to_le_bytes());
    }
    put(&mut b, 108, &352f32.to_le_bytes());
    put(&mut b, 112, &1f32.to_le_bytes());
    put(&mut b, 116, &0f32.to_le_bytes());
    b[123] = 2; // xyzt_units: mm
    put(&mut b, 148, b"repux");
    put(&mut b, 252, &1i16.to_le_bytes()); // qform_code: scanner
    put(&mut b, 254, &1i16.to_le_bytes()); // sform_code: scanner
    for i in 0..3 {
        put(&mut b, 256 + 4 * i, &(quat[i] as f32).to_le_bytes());
        put(&mut b, 268 + 4 * i, &(g.affine[i][3] as f32).to_le_bytes());
        for c in 0..4 {
            put(
                &mut b,
                280 + 16 * i + 4 * c,
                &(g.affine[i][c] as f32).to_le_bytes(),
            );
        }
    }
    put(&mut b, 344, b"n+1\0");
    Ok(b)
}

/// Writes `.nii` or `.nii.gz` (NIfTI-1, sform and qform both set, code 1) atomically: the data
/// go to a temporary file in the same folder that is renamed over `path` only when complete.
/// `data` is C × D × H × W; integer types round and must fit (an error names the value).
pub fn write_nifti(
    path: &Path,
    g: &Geometry,
    channels: usize,
    data: &[f32],
    dt: DataType,
) -> Result<()> {
    if data.len() != channels * g.voxels() {
        return Err(Error::invalid(
            path,
            format!(
                "{} values for {} channels of {:?}",
                data.len(),
                channels,
                g.shape
            ),
        ));
    }
    let gz = ends_with_ci(path, ".nii.gz");
    if !gz && !ends_with_ci(path, ".nii") {
        return Err(Error::invalid(
            path,
            "output name must end in .nii or .nii.gz",
        ));
    }
    let mut bytes = make_header(g, channels, dt).map_err(|m| Error::invalid(path, m))?;
    bytes.reserve(data.len() * dt.size());
    // C order of (x, y, z) → Fortran order: reverse the axes per channel.
    let ro = Reorientation {
        from_shape: g.shape,
        perm: [2, 1, 0],
        flip: [false; 3],
    };
    let n = g.voxels();
    for c in 0..channels {
        for v in ro.apply_data(&data[c * n..(c + 1) * n]) {
            encode(v, dt, &mut bytes).map_err(|m| Error::invalid(path, m))?;
        }
    }
    write_atomic(path, |w| {
        if gz {
            let mut enc = flate2::write::GzEncoder::new(w, flate2::Compression::new(4));
            enc.write_all(&bytes)?;
            enc.finish()?;
        } else {
            w.write_all(&bytes)?;
        }
        Ok(())
    })
}

/// Writes through a temporary file in the destination folder, renamed into place on success.
pub fn write_atomic(
    path: &Path,
    body: impl FnOnce(&mut std::io::BufWriter<&std::fs::File>) -> std::io::Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".repux-tmp")
        .tempfile_in(dir)
        .map_err(|e| Error::io(path, e))?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file());
        body(&mut w).map_err(|e| Error::io(path, e))?;
        w.flush().map_err(|e| Error::io(path, e))?;
    }
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    // tempfile creates 0600 files; outputs are ordinary files (0644 before the umask).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io(path, e))?;
    }
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Writes `bytes` to `path` atomically (see [`write_atomic`]).
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |w| w.write_all(bytes))
}

/// Writes `value` as pretty-printed JSON, atomically.
pub fn write_json<T: serde::Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::invalid(path, format!("cannot serialise as JSON: {e}")))?;
    write_bytes_atomic(path, text.as_bytes())
}

/// Writes an integer label map with the smallest unsigned type that holds `max_label`.
pub fn write_labels(path: &Path, g: &Geometry, labels: &[f32], max_label: u32) -> Result<()> {
    write_nifti(path, g, 1, labels, DataType::for_labels(max_label))
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

    #[test]
    fn base_affine_when_no_codes() {
        let g = Geometry::from_affine([4, 6, 8], crate::geometry::IDENTITY);
        let mut hb = make_header(&g, 1, DataType::U8).unwrap();
        hb[252..256].fill(0); // qform_code = sform_code = 0
        let h = parse_header(&hb).unwrap();
        let a = h.affine();
        // nibabel: diag(-1, 1, 1), origin -(shape-1)/2 * zooms
        assert_eq!(a[0], [-1.0, 0.0, 0.0, 1.5]);
        assert_eq!(a[1], [0.0, 1.0, 0.0, -2.5]);
        assert_eq!(a[2], [0.0, 0.0, 1.0, -3.5]);
    }

    #[test]
    fn header_validation_messages() {
        let g = Geometry::from_affine([4, 6, 8], crate::geometry::IDENTITY);
        let good = make_header(&g, 1, DataType::U8).unwrap();
        let mut b = good.clone();
        b[40..42].copy_from_slice(&0i16.to_le_bytes());
        assert!(parse_header(&b).unwrap_err().contains("dim[0] = 0"));
        let mut b = good.clone();
        b[44..46].copy_from_slice(&(-3i16).to_le_bytes());
        assert!(parse_header(&b).unwrap_err().contains("dim[2] = -3"));
        let mut b = good.clone();
        b[344..348].copy_from_slice(b"xxxx");
        assert!(parse_header(&b).unwrap_err().contains("magic"));
        assert!(parse_header(&good[..100])
            .unwrap_err()
            .contains("truncated"));
        assert!(parse_header(b"hello").unwrap_err().contains("not a NIfTI"));
        assert_eq!(
            DataType::from_code(128)
                .unwrap_err()
                .to_string()
                .contains("RGB"),
            true
        );
    }

    #[test]
    fn encode_rejects_out_of_range() {
        let mut v = Vec::new();
        assert!(encode(256.0, DataType::U8, &mut v).is_err());
        assert!(encode(f32::NAN, DataType::U16, &mut v).is_err());
        assert!(encode(-1.0, DataType::U16, &mut v).is_err());
        encode(254.6, DataType::U8, &mut v).unwrap();
        assert_eq!(v, vec![255]);
    }
}
