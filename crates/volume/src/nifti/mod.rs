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
//!
//! Layout: `header` (datatypes, parsing, geometry, the header repux writes), `affine` (the qform
//! quaternion), `codec` (gzip and voxel bytes), `writer` (atomic `.nii`/`.nii.gz` output).

mod affine;
mod codec;
mod header;
mod writer;

pub(crate) use codec::{decode_fortran, encode, gunzip, read_maybe_gz};
pub use header::{make_header, parse_header, DataType, NiftiHeader, N1_SIZE, N2_SIZE};
pub use writer::{write_labels, write_nifti};

use crate::error::{Error, ErrorKind, Result};
use crate::geometry::Geometry;
use crate::volume::{Stats, Volume};
use std::path::{Path, PathBuf};

/// A decoded NIfTI (or NRRD) file: the volume, its on-disk type and f64 statistics.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub volume: Volume,
    pub datatype: DataType,
    /// Full data shape as stored (nibabel's `img.shape`).
    pub shape: Vec<usize>,
    pub stats: Stats,
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
