//! repux-volume: everything that touches image files. Volumes with geometry, NIfTI-1/2, NRRD and
//! MetaImage I/O, dataset layouts (nnU-Net v2, Medical Segmentation Decathlon, paired folders) with their
//! integrity check, and the synthetic abdominal phantom used by the demo and the tests.
//!
//! No burn here: this crate compiles and tests in seconds.

pub mod dataset;
pub mod dicom;
pub mod error;
pub mod fs;
pub mod geometry;
pub mod metaimage;
pub mod nifti;
pub mod npy;
pub mod nrrd;
pub mod synth;
pub mod volume;

pub use dataset::{Case, Dataset, Layout};
pub use error::{Error, ErrorKind, Result};
pub use geometry::{Affine, Geometry, Reorientation};
pub use nifti::{DataType, Loaded};
pub use volume::{Stats, Volume};

use std::path::Path;

/// File formats repux reads, chosen by the file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Nifti,
    Nrrd,
    MetaImage,
}

impl Format {
    pub fn of(path: &Path) -> Option<Format> {
        let n = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        let n = n.strip_suffix(".gz").unwrap_or(&n);
        if n.ends_with(".nii") || n.ends_with(".hdr") || n.ends_with(".img") {
            Some(Format::Nifti)
        } else if n.ends_with(".nrrd") || n.ends_with(".nhdr") {
            Some(Format::Nrrd)
        } else if n.ends_with(".mha") || n.ends_with(".mhd") {
            Some(Format::MetaImage)
        } else {
            None
        }
    }
}

/// Reads any supported image file, or the DICOM series in a folder (the only one it holds): voxels (scaled, C × D × H × W), geometry, on-disk type and
/// f64 statistics of the scaled values.
pub fn read(path: &Path) -> Result<Loaded> {
    if path.is_dir() {
        return dicom::read_series(path, None);
    }
    match Format::of(path) {
        Some(Format::Nifti) => nifti::read_nifti(path),
        Some(Format::Nrrd) => nrrd::read_nrrd(path),
        Some(Format::MetaImage) => metaimage::read_metaimage(path),
        None => Err(Error::new(path, ErrorKind::UnknownFormat)),
    }
}

/// Reads an image file into a [`Volume`].
pub fn read_volume(path: &Path) -> Result<Volume> {
    read(path).map(|l| l.volume)
}

/// Writes an image in the format its name says: `.nii`/`.nii.gz` (NIfTI-1) or `.mha`/`.mhd`
/// (MetaImage), atomically. `data` is C × D × H × W; integer types round and must fit.
pub fn write_image(
    path: &Path,
    g: &Geometry,
    channels: usize,
    data: &[f32],
    dt: DataType,
) -> Result<()> {
    let n = path.to_string_lossy().to_ascii_lowercase();
    if n.ends_with(".mha") || n.ends_with(".mhd") {
        metaimage::write_metaimage(path, g, channels, data, dt)
    } else if n.ends_with(".nii") || n.ends_with(".nii.gz") {
        nifti::write_nifti(path, g, channels, data, dt)
    } else {
        Err(Error::invalid(
            path,
            "output name must end in .nii, .nii.gz, .mha or .mhd",
        ))
    }
}

/// Writes an integer label map (format by name, see [`write_image`]) with the smallest unsigned
/// type that holds `max_label`.
pub fn write_labels(path: &Path, g: &Geometry, labels: &[f32], max_label: u32) -> Result<()> {
    write_image(path, g, 1, labels, DataType::for_labels(max_label))
}
