//! DICOM series → volume, on dicom-rs (pure-Rust decoders: native, deflate, RLE, JPEG, JPEG 2000).
//!
//! A folder is searched recursively; files that are not DICOM are skipped, DICOM files are
//! grouped by SeriesInstanceUID. A series' slices are sorted by their position along the slice
//! normal (ImageOrientationPatient row × column direction); the affine comes from orientation,
//! the first slice's ImagePositionPatient and PixelSpacing, with the slice step *measured* from
//! the positions (SliceThickness is not the step). LPS is turned into repux's RAS. Each slice's
//! RescaleSlope/Intercept is applied. Voxel (i, j, k) is column i, row j of slice k.
//!
//! Errors name a file and the problem: duplicate positions, missing slices (a gap of about twice
//! the step), uneven steps beyond 1 % (+ 0.01 mm), mixed orientations or sizes, gantry tilt (the
//! positions do not advance along the normal: resample with dcm2niix first), no pixel data,
//! a transfer syntax no decoder handles, and — not supported yet — enhanced multi-frame objects.

use crate::error::{Error, Result};
use crate::geometry::{Affine, Geometry};
use crate::nifti::{DataType, Loaded};
use crate::volume::{StatsAcc, Volume};
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One series found in a folder.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SeriesInfo {
    pub uid: String,
    pub description: String,
    pub modality: String,
    pub files: Vec<PathBuf>,
}

/// Header fields of one slice.
struct Slice {
    file: PathBuf,
    position: [f64; 3],
    orientation: [f64; 6],
    spacing: [f64; 2],
    rows: usize,
    cols: usize,
    thickness: Option<f64>,
}

fn header(path: &Path) -> Option<DefaultDicomObject> {
    OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .ok()
}

fn text(obj: &DefaultDicomObject, tag: dicom_core::Tag) -> Option<String> {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim().to_string())
}

fn floats(
    obj: &DefaultDicomObject,
    tag: dicom_core::Tag,
    n: usize,
    path: &Path,
    name: &str,
) -> Result<Vec<f64>> {
    let e = obj.element_opt(tag).ok().flatten().ok_or_else(|| {
        Error::invalid(path, format!("no {name}: not an image slice with geometry"))
    })?;
    let v = e
        .to_multi_float64()
        .map_err(|err| Error::invalid(path, format!("{name}: {err}")))?;
    if v.len() != n || v.iter().any(|x| !x.is_finite()) {
        return Err(Error::invalid(
            path,
            format!(
                "{name} has {} values {v:?}, expected {n} finite numbers",
                v.len()
            ),
        ));
    }
    Ok(v)
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files_under(&p, out)?;
        } else if p.is_file() {
            out.push(p);
        }
    }
    Ok(())
}

/// The DICOM series under `dir` (recursively), sorted by UID; files that are not DICOM are skipped.
pub fn list_series(dir: &Path) -> Result<Vec<SeriesInfo>> {
    let mut files = Vec::new();
    files_under(dir, &mut files)?;
    let mut series: BTreeMap<String, SeriesInfo> = BTreeMap::new();
    for f in files {
        let Some(obj) = header(&f) else { continue };
        let uid = text(&obj, tags::SERIES_INSTANCE_UID).unwrap_or_default();
        if uid.is_empty() {
            continue;
        }
        let s = series.entry(uid.clone()).or_insert_with(|| SeriesInfo {
            uid,
            description: text(&obj, tags::SERIES_DESCRIPTION).unwrap_or_default(),
            modality: text(&obj, tags::MODALITY).unwrap_or_default(),
            files: Vec::new(),
        });
        s.files.push(f);
    }
    if series.is_empty() {
        return Err(Error::invalid(dir, "holds no DICOM files"));
    }
    Ok(series.into_values().collect())
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// Reads the series `uid` under `dir`, or its only series when `uid` is `None`.
pub fn read_series(dir: &Path, uid: Option<&str>) -> Result<Loaded> {
    let all = list_series(dir)?;
    let s = match uid {
        Some(u) => all.iter().find(|s| s.uid == u).ok_or_else(|| {
            Error::invalid(
                dir,
                format!("no series {u}; the folder holds {}", uids(&all)),
            )
        })?,
        None if all.len() == 1 => &all[0],
        None => {
            return Err(Error::invalid(
                dir,
                format!(
                    "holds {} series; choose one with --series: {}",
                    all.len(),
                    uids(&all)
                ),
            ))
        }
    };
    let mut slices = Vec::with_capacity(s.files.len());
    for f in &s.files {
        let obj = header(f).ok_or_else(|| Error::invalid(f, "cannot be read as DICOM"))?;
        let frames = text(&obj, tags::NUMBER_OF_FRAMES)
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(1);
        if frames > 1 {
            return Err(Error::invalid(f, format!("a multi-frame object ({frames} frames): enhanced multi-frame DICOM is not supported yet")));
        }
        let o = floats(
            &obj,
            tags::IMAGE_ORIENTATION_PATIENT,
            6,
            f,
            "ImageOrientationPatient",
        )?;
        let p = floats(
            &obj,
            tags::IMAGE_POSITION_PATIENT,
            3,
            f,
            "ImagePositionPatient",
        )?;
        let sp = floats(&obj, tags::PIXEL_SPACING, 2, f, "PixelSpacing")?;
        if sp.iter().any(|&v| v <= 0.0) {
            return Err(Error::invalid(
                f,
                format!("PixelSpacing {sp:?} must be positive"),
            ));
        }
        let rows = floats(&obj, tags::ROWS, 1, f, "Rows")?[0] as usize;
        let cols = floats(&obj, tags::COLUMNS, 1, f, "Columns")?[0] as usize;
        slices.push(Slice {
            file: f.clone(),
            position: [p[0], p[1], p[2]],
            orientation: [o[0], o[1], o[2], o[3], o[4], o[5]],
            spacing: [sp[0], sp[1]],
            rows,
            cols,
            thickness: text(&obj, tags::SLICE_THICKNESS).and_then(|t| t.parse().ok()),
        });
    }
    let first = &slices[0];
    for sl in &slices[1..] {
        if sl.rows != first.rows || sl.cols != first.cols {
            return Err(Error::invalid(
                &sl.file,
                format!(
                    "{}×{} pixels, but {} has {}×{}: mixed sizes in one series",
                    sl.rows,
                    sl.cols,
                    first.file.display(),
                    first.rows,
                    first.cols
                ),
            ));
        }
        if sl
            .orientation
            .iter()
            .zip(&first.orientation)
            .any(|(a, b)| (a - b).abs() > 1e-4)
        {
            return Err(Error::invalid(&sl.file, format!("ImageOrientationPatient {:?} differs from {}'s {:?}: mixed orientations in one series", sl.orientation, first.file.display(), first.orientation)));
        }
        if (sl.spacing[0] - first.spacing[0]).abs() > 1e-4
            || (sl.spacing[1] - first.spacing[1]).abs() > 1e-4
        {
            return Err(Error::invalid(
                &sl.file,
                format!(
                    "PixelSpacing {:?} differs from {}'s {:?}",
                    sl.spacing,
                    first.file.display(),
                    first.spacing
                ),
            ));
        }
    }
    let (o, pixel_spacing, thickness) = (first.orientation, first.spacing, first.thickness);
    let (rows, cols) = (first.rows, first.cols);
    let row_dir = [o[0], o[1], o[2]];
    let col_dir = [o[3], o[4], o[5]];
    let normal = cross(row_dir, col_dir);
    slices.sort_by(|a, b| dot(a.position, normal).total_cmp(&dot(b.position, normal)));
    let n = slices.len();
    let step_vec = if n > 1 {
        let (a, b) = (slices[0].position, slices[n - 1].position);
        [0, 1, 2].map(|i| (b[i] - a[i]) / (n - 1) as f64)
    } else {
        let t = thickness.unwrap_or(1.0);
        normal.map(|v| v * t)
    };
    let step = dot(step_vec, normal);
    if n > 1 {
        // The typical step is the median gap: a missing slice must not stretch it.
        let gaps: Vec<f64> = slices
            .windows(2)
            .map(|w| dot(w[1].position, normal) - dot(w[0].position, normal))
            .collect();
        let mut sorted = gaps.clone();
        sorted.sort_by(f64::total_cmp);
        let typical = sorted[sorted.len() / 2];
        for (w, &d) in slices.windows(2).zip(&gaps) {
            if d.abs() < 1e-4 {
                return Err(Error::invalid(
                    &w[1].file,
                    format!(
                        "the same position as {}: duplicate slice",
                        w[0].file.display()
                    ),
                ));
            }
            if d > 1.5 * typical {
                return Err(Error::invalid(&w[1].file, format!("{d:.3} mm after {} where the series steps {typical:.3} mm: missing slice(s)", w[0].file.display())));
            }
            if (d - typical).abs() > 0.01 * typical + 0.01 {
                return Err(Error::invalid(&w[1].file, format!("{d:.3} mm after {} where the series steps {typical:.3} mm: uneven slice spacing", w[0].file.display())));
            }
        }
        let along = normal.map(|v| v * step);
        let tilt = (0..3)
            .map(|i| (step_vec[i] - along[i]).powi(2))
            .sum::<f64>()
            .sqrt();
        if tilt > 1e-3 * step + 0.01 {
            return Err(Error::invalid(dir, format!("series {}: slice positions drift {tilt:.3} mm per slice across the image plane (gantry tilt); resample it first, e.g. with dcm2niix", s.uid)));
        }
    }
    // LPS: i along the row direction (column index) × column spacing, j along the column
    // direction × row spacing, k along the measured step. RAS negates x and y.
    let mut a: Affine = [[0.0; 4]; 4];
    for r in 0..3 {
        a[r][0] = row_dir[r] * pixel_spacing[1];
        a[r][1] = col_dir[r] * pixel_spacing[0];
        a[r][2] = step_vec[r];
        a[r][3] = slices[0].position[r];
    }
    a[3][3] = 1.0;
    for row in a.iter_mut().take(2) {
        row.iter_mut().for_each(|v| *v = -*v);
    }
    let geometry = Geometry {
        shape: [cols, rows, n],
        spacing: [pixel_spacing[1], pixel_spacing[0], step.abs()],
        affine: a,
    };
    let mut data = vec![0f32; cols * rows * n];
    let mut acc = StatsAcc::default();
    let mut datatype = DataType::I16;
    for (k, sl) in slices.iter().enumerate() {
        let obj = dicom_object::open_file(&sl.file)
            .map_err(|e| Error::invalid(&sl.file, format!("cannot be read as DICOM: {e}")))?;
        let decoded = obj
            .decode_pixel_data()
            .map_err(|e| Error::invalid(&sl.file, format!("pixel data: {e}")))?;
        if decoded.samples_per_pixel() != 1 {
            return Err(Error::invalid(
                &sl.file,
                "colour (RGB) pixel data: repux reads grayscale series",
            ));
        }
        let stored: Vec<f64> = decoded
            .to_vec_with_options(&ConvertOptions::new().with_modality_lut(ModalityLutOption::None))
            .map_err(|e| Error::invalid(&sl.file, format!("pixel data: {e}")))?;
        if stored.len() != rows * cols {
            return Err(Error::invalid(
                &sl.file,
                format!("{} pixel values for {rows}×{cols}", stored.len()),
            ));
        }
        let slope = text(&obj, tags::RESCALE_SLOPE)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(1.0);
        let inter = text(&obj, tags::RESCALE_INTERCEPT)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        let bits = decoded.bits_allocated();
        let signed = decoded.pixel_representation() == dicom_pixeldata::PixelRepresentation::Signed;
        datatype = match (bits, signed) {
            (8, false) => DataType::U8,
            (8, true) => DataType::I8,
            (16, false) => DataType::U16,
            (16, true) => DataType::I16,
            (32, false) => DataType::U32,
            (32, true) => DataType::I32,
            _ => DataType::F64,
        };
        for y in 0..rows {
            for x in 0..cols {
                let v = stored[y * cols + x] * slope + inter;
                acc.push(v);
                data[(x * rows + y) * n + k] = v as f32;
            }
        }
    }
    Ok(Loaded {
        volume: Volume::new(geometry, 1, data),
        datatype,
        shape: vec![cols, rows, n],
        stats: acc.finish(),
    })
}

fn uids(all: &[SeriesInfo]) -> String {
    all.iter()
        .map(|s| {
            format!(
                "{} ({} files{})",
                s.uid,
                s.files.len(),
                if s.description.is_empty() {
                    String::new()
                } else {
                    format!(", {}", s.description)
                }
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}
