//! repux-prep: the preprocessing pipeline (no burn). Transforms record how to undo themselves
//! (`pipeline`), resampling matches scipy (`resample`), plans are plain data (`plan`), the cache
//! keeps training from ever resampling again (`cache`), and patches come from a seeded sampler
//! with augmentation fed by a worker pool (`sampler`, `augment`, `loader`).

pub mod augment;
pub mod cache;
pub mod intensity;
pub mod loader;
pub mod pipeline;
pub mod plan;
pub mod resample;
pub mod sampler;

pub use intensity::Normalization;
pub use pipeline::{
    invert_channel, invert_labels, invert_probabilities, preprocess, InverseRecord, LabelInterp,
    PrepConfig, PrepError, Preprocessed, ResampleOptions, SeparateZ,
};
pub use plan::{PlanOptions, Plans};
pub use resample::Interp;

use std::path::PathBuf;

/// Errors of the preprocessing crate; each names the file or case it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Volume(#[from] repux_volume::Error),
    #[error("{}: {problem}", path.display())]
    Case { path: PathBuf, problem: String },
    #[error("{0}")]
    Other(String),
}

/// Reads a case's image channels (one file per channel, or one multi-channel file) into one
/// volume; the channel files must share their grid.
pub fn read_case_image(case: &repux_volume::Case) -> Result<repux_volume::Volume, Error> {
    let mut vols = Vec::with_capacity(case.images.len());
    for p in &case.images {
        vols.push((p, repux_volume::read_volume(p)?));
    }
    let (first_path, first) = vols
        .first()
        .ok_or_else(|| Error::Other(format!("case {}: no image files", case.id)))?;
    let mut out = first.clone();
    for (p, v) in vols.iter().skip(1) {
        if v.geometry.shape != first.geometry.shape
            || v.geometry.max_affine_diff(&first.geometry)
                > repux_volume::dataset::GEOMETRY_TOLERANCE
        {
            return Err(Error::Case {
                path: (*p).clone(),
                problem: format!("channel grid does not match {}", first_path.display()),
            });
        }
        out.data.extend_from_slice(&v.data);
        out.channels += v.channels;
    }
    Ok(out)
}
