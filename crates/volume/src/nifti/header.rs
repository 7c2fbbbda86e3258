//! The NIfTI-1/2 header: datatypes, parsing with validation, the geometry it encodes (nibabel's
//! `get_best_affine`, `get_zooms`), and the NIfTI-1 header repux writes.

use super::affine::{affine_to_qform, qform_to_affine};
use crate::error::ErrorKind;
use crate::geometry::{Affine, Geometry};

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
    for (i, q) in quat.iter().enumerate() {
        put(&mut b, 256 + 4 * i, &(*q as f32).to_le_bytes());
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(DataType::from_code(128)
            .unwrap_err()
            .to_string()
            .contains("RGB"));
    }
}
