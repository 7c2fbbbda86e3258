//! Writing `.nii` / `.nii.gz` (NIfTI-1) atomically.

use super::codec::encode;
use super::ends_with_ci;
use super::header::{make_header, DataType};
use crate::error::{Error, Result};
use crate::fs::write_atomic;
use crate::geometry::{Geometry, Reorientation};
use std::io::Write;
use std::path::Path;

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

/// Writes an integer label map with the smallest unsigned type that holds `max_label`.
pub fn write_labels(path: &Path, g: &Geometry, labels: &[f32], max_label: u32) -> Result<()> {
    write_nifti(path, g, 1, labels, DataType::for_labels(max_label))
}
