//! Voxel bytes: gzip, Fortran-ordered decoding with scaling and statistics (shared with NRRD),
//! and encoding with range checks.

use super::header::DataType;
use crate::error::{Error, ErrorKind, Result};
use crate::geometry::Reorientation;
use crate::volume::{Stats, StatsAcc};
use rayon::prelude::*;
use std::io::Read;
use std::path::Path;

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
pub(crate) fn encode(v: f32, dt: DataType, out: &mut Vec<u8>) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
