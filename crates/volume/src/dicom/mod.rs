//! DICOM series → volume, on dicom-rs (pure-Rust decoders: native, deflate, RLE, JPEG, JPEG 2000),
//! and DICOM-SEG out ([`seg`]).
//!
//! A folder is searched recursively; files that are not DICOM are skipped, DICOM files are
//! grouped by SeriesInstanceUID. A series is a stack of frames: each single-frame file is one,
//! and an enhanced multi-frame object (Enhanced CT/MR) gives one per frame, with its position,
//! orientation, pixel spacing and rescale from the per-frame or shared functional groups. Frames
//! are sorted by their position along the slice normal (ImageOrientationPatient row × column
//! direction); the affine comes from orientation, the first frame's ImagePositionPatient and
//! PixelSpacing, with the slice step *measured* from the positions (SliceThickness is not the
//! step). LPS is turned into repux's RAS. Each frame's RescaleSlope/Intercept is applied. Voxel
//! (i, j, k) is column i, row j of frame k.
//!
//! Errors name a file and the problem: duplicate positions, missing slices (a gap of about twice
//! the step), uneven steps beyond 1 % (+ 0.01 mm), mixed orientations or sizes, gantry tilt (the
//! positions do not advance along the normal: resample with dcm2niix first), no pixel data,
//! a transfer syntax no decoder handles (JPEG-LS, for one: its decoder is C), multi-frame objects
//! without per-frame geometry.

pub mod codes;
pub mod seg;

use crate::error::{Error, Result};
use crate::geometry::{Affine, Geometry};
use crate::nifti::{DataType, Loaded};
use crate::volume::{StatsAcc, Volume};
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions};
use dicom_pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
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

/// One image of a series: a single-frame file or one frame of a multi-frame object.
#[derive(Clone, Debug)]
pub struct SourceFrame {
    pub file: PathBuf,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    /// 1-based frame number in a multi-frame object; `None` for a single-frame file.
    pub frame_number: Option<usize>,
    /// ImagePositionPatient (LPS, mm).
    pub position: [f64; 3],
    orientation: [f64; 6],
    spacing: [f64; 2],
    rows: usize,
    cols: usize,
    thickness: Option<f64>,
    rescale: (f64, f64),
}

/// A series' frames in volume order (k = 0, 1, …) with the geometry repux reads it on, and the
/// first file's header (patient, study and frame-of-reference attributes a derived object copies).
#[derive(Clone, Debug)]
pub struct SourceSeries {
    pub uid: String,
    pub frames: Vec<SourceFrame>,
    pub geometry: Geometry,
    /// ImageOrientationPatient (LPS row direction, column direction).
    pub orientation: [f64; 6],
    /// PixelSpacing as DICOM orders it: row spacing, column spacing (mm).
    pub pixel_spacing: [f64; 2],
    /// The measured step between frames along the normal (mm).
    pub step: f64,
    /// SliceThickness of the first frame, when given.
    pub thickness: Option<f64>,
    pub rows: usize,
    pub cols: usize,
    pub header: InMemDicomObject,
}

fn header(path: &Path) -> Option<DefaultDicomObject> {
    OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .ok()
}

pub(crate) fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim().to_string())
}

pub(crate) fn floats(
    obj: &InMemDicomObject,
    tag: Tag,
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

/// The first item of sequence `tag` in `obj`.
pub(crate) fn item(obj: &InMemDicomObject, tag: Tag) -> Option<&InMemDicomObject> {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.items())
        .and_then(|items| items.first())
}

/// The files a series folder holds: every regular file under `dir`, recursively, in path
/// order, leaving out hidden ones (`.DS_Store`, editors' swap files). The DICOM reader reads
/// these, and the preprocessing cache keys a series folder on them.
pub fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    collect_files(dir, &mut out)?;
    Ok(out)
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
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
            collect_files(&p, out)?;
        } else if p.is_file() {
            out.push(p);
        }
    }
    Ok(())
}

/// Series under `dir` with each file's parsed header (pixel data not read), sorted by UID.
fn scan(dir: &Path) -> Result<Vec<(SeriesInfo, Vec<DefaultDicomObject>)>> {
    let files = files_under(dir)?;
    let mut series: BTreeMap<String, (SeriesInfo, Vec<DefaultDicomObject>)> = BTreeMap::new();
    for f in files {
        let Some(obj) = header(&f) else { continue };
        let Some(uid) = text(&obj, tags::SERIES_INSTANCE_UID).filter(|u| !u.is_empty()) else {
            continue;
        };
        let s = series.entry(uid.clone()).or_insert_with(|| {
            let info = SeriesInfo {
                uid,
                description: text(&obj, tags::SERIES_DESCRIPTION).unwrap_or_default(),
                modality: text(&obj, tags::MODALITY).unwrap_or_default(),
                files: Vec::new(),
            };
            (info, Vec::new())
        });
        s.0.files.push(f);
        s.1.push(obj);
    }
    if series.is_empty() {
        return Err(Error::invalid(dir, "holds no DICOM files"));
    }
    Ok(series.into_values().collect())
}

/// The DICOM series under `dir` (recursively), sorted by UID; files that are not DICOM are skipped.
pub fn list_series(dir: &Path) -> Result<Vec<SeriesInfo>> {
    Ok(scan(dir)?.into_iter().map(|(info, _)| info).collect())
}

pub(crate) fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

pub(crate) fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn parse_text<T: std::str::FromStr>(obj: &InMemDicomObject, tag: Tag) -> Option<T> {
    text(obj, tag).and_then(|v| v.parse().ok())
}

/// The frames of one file: itself, or each frame of a multi-frame object.
fn frames_of(obj: &DefaultDicomObject, file: &Path) -> Result<Vec<SourceFrame>> {
    // Reading a volume does not need the UIDs (anonymisers sometimes strip them); empty means
    // absent, and `seg::write_seg` refuses such a source by file, since a SEG must reference it.
    let sop_class_uid = text(obj, tags::SOP_CLASS_UID).unwrap_or_default();
    let sop_instance_uid = text(obj, tags::SOP_INSTANCE_UID).unwrap_or_default();
    let rows = floats(obj, tags::ROWS, 1, file, "Rows")?[0] as usize;
    let cols = floats(obj, tags::COLUMNS, 1, file, "Columns")?[0] as usize;
    let n: usize = parse_text(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1);
    let shared = item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
    let per_frame: Option<&[InMemDicomObject]> = obj
        .element_opt(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .ok()
        .flatten()
        .and_then(|e| e.items());
    let Some(per_frame) = per_frame else {
        if n > 1 {
            return Err(Error::invalid(
                file,
                format!("a multi-frame object ({n} frames) without per-frame functional groups: no geometry for its frames"),
            ));
        }
        // A classic single-frame image: the geometry is at the top level.
        let o = floats(
            obj,
            tags::IMAGE_ORIENTATION_PATIENT,
            6,
            file,
            "ImageOrientationPatient",
        )?;
        let p = floats(
            obj,
            tags::IMAGE_POSITION_PATIENT,
            3,
            file,
            "ImagePositionPatient",
        )?;
        let sp = floats(obj, tags::PIXEL_SPACING, 2, file, "PixelSpacing")?;
        return Ok(vec![SourceFrame {
            file: file.to_path_buf(),
            sop_class_uid,
            sop_instance_uid,
            frame_number: None,
            position: [p[0], p[1], p[2]],
            orientation: [o[0], o[1], o[2], o[3], o[4], o[5]],
            spacing: [sp[0], sp[1]],
            rows,
            cols,
            thickness: parse_text(obj, tags::SLICE_THICKNESS),
            rescale: (
                parse_text(obj, tags::RESCALE_SLOPE).unwrap_or(1.0),
                parse_text(obj, tags::RESCALE_INTERCEPT).unwrap_or(0.0),
            ),
        }]);
    };
    if per_frame.len() != n {
        return Err(Error::invalid(
            file,
            format!(
                "NumberOfFrames is {n} but PerFrameFunctionalGroupsSequence has {} items",
                per_frame.len()
            ),
        ));
    }
    // A functional group macro is in the frame's item or in the shared one.
    fn group<'a>(
        f: &'a InMemDicomObject,
        shared: Option<&'a InMemDicomObject>,
        tag: Tag,
    ) -> Option<&'a InMemDicomObject> {
        item(f, tag).or_else(|| shared.and_then(|s| item(s, tag)))
    }
    let mut out = Vec::with_capacity(n);
    for (i, f) in per_frame.iter().enumerate() {
        let what = |m: &str| format!("{m} of frame {}", i + 1);
        let missing =
            |m: &str| Error::invalid(file, format!("no {} in the functional groups", what(m)));
        let pos = group(f, shared, tags::PLANE_POSITION_SEQUENCE)
            .ok_or_else(|| missing("PlanePositionSequence"))?;
        let ori = group(f, shared, tags::PLANE_ORIENTATION_SEQUENCE)
            .ok_or_else(|| missing("PlaneOrientationSequence"))?;
        let mea = group(f, shared, tags::PIXEL_MEASURES_SEQUENCE)
            .ok_or_else(|| missing("PixelMeasuresSequence"))?;
        let p = floats(
            pos,
            tags::IMAGE_POSITION_PATIENT,
            3,
            file,
            &what("ImagePositionPatient"),
        )?;
        let o = floats(
            ori,
            tags::IMAGE_ORIENTATION_PATIENT,
            6,
            file,
            &what("ImageOrientationPatient"),
        )?;
        let sp = floats(mea, tags::PIXEL_SPACING, 2, file, &what("PixelSpacing"))?;
        let (slope, intercept) = match group(f, shared, tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE) {
            Some(t) => (
                parse_text(t, tags::RESCALE_SLOPE).unwrap_or(1.0),
                parse_text(t, tags::RESCALE_INTERCEPT).unwrap_or(0.0),
            ),
            None => (
                parse_text(obj, tags::RESCALE_SLOPE).unwrap_or(1.0),
                parse_text(obj, tags::RESCALE_INTERCEPT).unwrap_or(0.0),
            ),
        };
        out.push(SourceFrame {
            file: file.to_path_buf(),
            sop_class_uid: sop_class_uid.clone(),
            sop_instance_uid: sop_instance_uid.clone(),
            frame_number: Some(i + 1),
            position: [p[0], p[1], p[2]],
            orientation: [o[0], o[1], o[2], o[3], o[4], o[5]],
            spacing: [sp[0], sp[1]],
            rows,
            cols,
            thickness: parse_text(mea, tags::SLICE_THICKNESS),
            rescale: (slope, intercept),
        });
    }
    Ok(out)
}

fn where_(f: &SourceFrame) -> String {
    match f.frame_number {
        Some(n) => format!("{} (frame {n})", f.file.display()),
        None => f.file.display().to_string(),
    }
}

/// Picks series `uid`, or the only one.
fn choose(
    dir: &Path,
    mut all: Vec<(SeriesInfo, Vec<DefaultDicomObject>)>,
    uid: Option<&str>,
) -> Result<(SeriesInfo, Vec<DefaultDicomObject>)> {
    match uid {
        Some(u) => match all.iter().position(|(s, _)| s.uid == u) {
            Some(i) => Ok(all.swap_remove(i)),
            None => Err(Error::invalid(
                dir,
                format!(
                    "no series {u}; the folder holds {}",
                    uids(all.iter().map(|(i, _)| i))
                ),
            )),
        },
        None if all.len() == 1 => Ok(all.swap_remove(0)),
        None => Err(Error::invalid(
            dir,
            format!(
                "holds {} series; choose one with --series: {}",
                all.len(),
                uids(all.iter().map(|(i, _)| i))
            ),
        )),
    }
}

/// The frames and geometry of series `uid` under `dir` (or its only series), without pixel data.
pub fn source_series(dir: &Path, uid: Option<&str>) -> Result<SourceSeries> {
    let (s, headers) = choose(dir, scan(dir)?, uid)?;
    let mut frames = Vec::new();
    for (f, obj) in s.files.iter().zip(&headers) {
        frames.extend(frames_of(obj, f)?);
    }
    for fr in &frames {
        if fr.spacing.iter().any(|&v| v <= 0.0) {
            return Err(Error::invalid(
                &fr.file,
                format!("PixelSpacing {:?} must be positive", fr.spacing),
            ));
        }
    }
    let first = frames[0].clone();
    for sl in &frames[1..] {
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
            return Err(Error::invalid(&sl.file, format!("ImageOrientationPatient {:?} of {} differs from {}'s {:?}: mixed orientations in one series", sl.orientation, where_(sl), where_(&first), first.orientation)));
        }
        if (sl.spacing[0] - first.spacing[0]).abs() > 1e-4
            || (sl.spacing[1] - first.spacing[1]).abs() > 1e-4
        {
            return Err(Error::invalid(
                &sl.file,
                format!(
                    "PixelSpacing {:?} of {} differs from {}'s {:?}",
                    sl.spacing,
                    where_(sl),
                    where_(&first),
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
    frames.sort_by(|a, b| dot(a.position, normal).total_cmp(&dot(b.position, normal)));
    let n = frames.len();
    let step_vec = if n > 1 {
        let (a, b) = (frames[0].position, frames[n - 1].position);
        [0, 1, 2].map(|i| (b[i] - a[i]) / (n - 1) as f64)
    } else {
        let t = thickness.unwrap_or(1.0);
        normal.map(|v| v * t)
    };
    let step = dot(step_vec, normal);
    if n > 1 {
        // The typical step is the median gap: a missing slice must not stretch it.
        let gaps: Vec<f64> = frames
            .windows(2)
            .map(|w| dot(w[1].position, normal) - dot(w[0].position, normal))
            .collect();
        let mut sorted = gaps.clone();
        sorted.sort_by(f64::total_cmp);
        let typical = sorted[sorted.len() / 2];
        for (w, &d) in frames.windows(2).zip(&gaps) {
            if d.abs() < 1e-4 {
                return Err(Error::invalid(
                    &w[1].file,
                    format!(
                        "{} is at the same position as {}: duplicate slice",
                        where_(&w[1]),
                        where_(&w[0])
                    ),
                ));
            }
            if d > 1.5 * typical {
                return Err(Error::invalid(&w[1].file, format!("{d:.3} mm after {} where the series steps {typical:.3} mm: missing slice(s)", where_(&w[0]))));
            }
            if (d - typical).abs() > 0.01 * typical + 0.01 {
                return Err(Error::invalid(&w[1].file, format!("{d:.3} mm after {} where the series steps {typical:.3} mm: uneven slice spacing", where_(&w[0]))));
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
        a[r][3] = frames[0].position[r];
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
    let header = headers
        .into_iter()
        .next()
        .map(|h| h.into_inner())
        .unwrap_or_else(InMemDicomObject::new_empty);
    Ok(SourceSeries {
        uid: s.uid,
        frames,
        geometry,
        orientation: o,
        pixel_spacing,
        step,
        thickness,
        rows,
        cols,
        header,
    })
}

/// Reads the series `uid` under `dir`, or its only series when `uid` is `None`.
pub fn read_series(dir: &Path, uid: Option<&str>) -> Result<Loaded> {
    let src = source_series(dir, uid)?;
    let (rows, cols, n) = (src.rows, src.cols, src.frames.len());
    let mut data = vec![0f32; cols * rows * n];
    let mut acc = StatsAcc::default();
    let mut datatype = DataType::I16;
    // Each file is decoded once; a multi-frame object fills several k.
    let mut by_file: BTreeMap<&Path, Vec<usize>> = BTreeMap::new();
    for (k, fr) in src.frames.iter().enumerate() {
        by_file.entry(fr.file.as_path()).or_default().push(k);
    }
    for (file, ks) in by_file {
        let obj = dicom_object::open_file(file)
            .map_err(|e| Error::invalid(file, format!("cannot be read as DICOM: {e}")))?;
        let decoded = obj.decode_pixel_data().map_err(|e| {
            let uid = obj.meta().transfer_syntax().trim_end_matches('\0');
            match TransferSyntaxRegistry.get(uid) {
                Some(ts) if !ts.can_decode_all() => Error::invalid(
                    file,
                    format!(
                        "pixel data in {} ({uid}), which repux cannot decode (it reads native, deflate, RLE, JPEG and JPEG 2000); convert the series first, e.g. with `gdcmconv --raw`",
                        ts.name()
                    ),
                ),
                _ => Error::invalid(file, format!("pixel data: {e}")),
            }
        })?;
        if decoded.samples_per_pixel() != 1 {
            return Err(Error::invalid(
                file,
                "colour (RGB) pixel data: repux reads grayscale series",
            ));
        }
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
        let opts = ConvertOptions::new().with_modality_lut(ModalityLutOption::None);
        for k in ks {
            let fr = &src.frames[k];
            let stored: Vec<f64> = decoded
                .to_vec_frame_with_options(fr.frame_number.map_or(0, |f| f as u32 - 1), &opts)
                .map_err(|e| Error::invalid(file, format!("pixel data of {}: {e}", where_(fr))))?;
            if stored.len() != rows * cols {
                return Err(Error::invalid(
                    file,
                    format!(
                        "{} pixel values for {rows}×{cols} in {}",
                        stored.len(),
                        where_(fr)
                    ),
                ));
            }
            let (slope, inter) = fr.rescale;
            for y in 0..rows {
                for x in 0..cols {
                    let v = stored[y * cols + x] * slope + inter;
                    acc.push(v);
                    data[(x * rows + y) * n + k] = v as f32;
                }
            }
        }
    }
    Ok(Loaded {
        volume: Volume::new(src.geometry, 1, data),
        datatype,
        shape: vec![cols, rows, n],
        stats: acc.finish(),
    })
}

fn uids<'a>(all: impl Iterator<Item = &'a SeriesInfo>) -> String {
    all.map(|s| {
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
