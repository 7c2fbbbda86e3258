//! `repux dataset check`: nnU-Net's `verify_dataset_integrity`, plus NaN/inf and geometry checks.

use super::*;

/// What the check found for one case.
#[derive(Clone, Debug, Serialize)]
pub struct CaseCheck {
    pub id: String,
    pub shape: Option<[usize; 3]>,
    pub spacing: Option<[f64; 3]>,
    pub orientation: Option<String>,
    pub channels: usize,
    pub label_values: Vec<u32>,
    pub problems: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub layout: Layout,
    pub cases: Vec<CaseCheck>,
    /// Dataset-level problems (listing problems from [`Dataset::open`]).
    pub problems: Vec<String>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.cases.iter().all(|c| c.problems.is_empty())
    }
    pub fn problem_count(&self) -> usize {
        self.problems.len() + self.cases.iter().map(|c| c.problems.len()).sum::<usize>()
    }
}

/// Largest affine difference (mm) two grids of one case may have, as in the contract.
pub const GEOMETRY_TOLERANCE: f64 = 1e-4;

/// Reads every training case in parallel and checks it: files readable, channels and label on
/// the same grid (shape equal, affine within [`GEOMETRY_TOLERANCE`]), label values integer and
/// among the declared labels, no NaN/inf in the images.
pub fn check(ds: &Dataset) -> CheckReport {
    let declared: BTreeSet<u32> = ds.label_values().into_iter().collect();
    let cases = ds
        .training
        .par_iter()
        .map(|c| check_case(ds, c, &declared))
        .collect();
    CheckReport {
        layout: ds.layout,
        cases,
        problems: ds.problems.clone(),
    }
}

fn check_case(ds: &Dataset, case: &Case, declared: &BTreeSet<u32>) -> CaseCheck {
    let mut out = CaseCheck {
        id: case.id.clone(),
        shape: None,
        spacing: None,
        orientation: None,
        channels: 0,
        label_values: Vec::new(),
        problems: Vec::new(),
    };
    let mut grid: Option<(crate::Geometry, PathBuf)> = None;
    let expect_channels_per_file = if ds.layout == Layout::Decathlon {
        ds.channel_names.len()
    } else {
        1
    };
    for img in &case.images {
        if !img.exists() {
            out.problems
                .push(format!("{}: image is missing", img.display()));
            continue;
        }
        let loaded = match crate::read(img) {
            Ok(l) => l,
            Err(e) => {
                out.problems.push(e.to_string());
                continue;
            }
        };
        let v = loaded.volume;
        out.channels += v.channels;
        if v.channels != expect_channels_per_file && ds.layout != Layout::Paired {
            out.problems.push(format!(
                "{}: {} channels, dataset.json declares {}",
                img.display(),
                v.channels,
                expect_channels_per_file
            ));
        }
        if loaded.stats.nonfinite > 0 {
            out.problems.push(format!(
                "{}: {} voxels are NaN or infinite",
                img.display(),
                loaded.stats.nonfinite
            ));
        }
        compare_grid(&mut grid, &v.geometry, img, &mut out.problems);
    }
    if let Some((g, _)) = &grid {
        out.shape = Some(g.shape);
        out.spacing = Some(g.spacing);
        out.orientation = Some(g.orientation());
    }
    match &case.label {
        None => out
            .problems
            .push(format!("case {}: no label file", case.id)),
        Some(lp) if !lp.is_file() => out
            .problems
            .push(format!("{}: label file is missing", lp.display())),
        Some(lp) => match crate::read(lp) {
            Err(e) => out.problems.push(e.to_string()),
            Ok(l) => {
                if l.volume.channels != 1 {
                    out.problems.push(format!(
                        "{}: label map has {} channels, expected 1",
                        lp.display(),
                        l.volume.channels
                    ));
                }
                // A label over the image's voxels in another axis order is read onto it.
                match &grid {
                    Some((g, gp)) => {
                        if let Err(e) = l.volume.geometry.reorientation_onto(g, GEOMETRY_TOLERANCE)
                        {
                            out.problems.push(format!(
                                "{}: {e} (the grid of {})",
                                lp.display(),
                                gp.display()
                            ));
                        }
                    }
                    None => compare_grid(&mut grid, &l.volume.geometry, lp, &mut out.problems),
                }
                let mut seen = BTreeSet::new();
                let mut bad = None;
                for &v in &l.volume.data {
                    if v >= 0.0 && v.fract() == 0.0 && v < 16_777_216.0 {
                        seen.insert(v as u32);
                    } else if bad.is_none() {
                        bad = Some(v);
                    }
                }
                if let Some(b) = bad {
                    out.problems.push(format!(
                        "{}: label value {b} is not a non-negative integer",
                        lp.display()
                    ));
                }
                if !declared.is_empty() {
                    let extra: Vec<u32> = seen
                        .iter()
                        .filter(|v| !declared.contains(v))
                        .copied()
                        .collect();
                    if !extra.is_empty() {
                        out.problems.push(format!("{}: label values {extra:?} are not declared in dataset.json (declared {:?})", lp.display(), declared));
                    }
                }
                out.label_values = seen.into_iter().collect();
            }
        },
    }
    out
}

fn compare_grid(
    first: &mut Option<(crate::Geometry, PathBuf)>,
    g: &crate::Geometry,
    path: &Path,
    problems: &mut Vec<String>,
) {
    match first {
        None => *first = Some((g.clone(), path.to_path_buf())),
        Some((f, fp)) => {
            if f.shape != g.shape {
                problems.push(format!(
                    "{}: shape {:?} does not match {} with shape {:?}",
                    path.display(),
                    g.shape,
                    fp.display(),
                    f.shape
                ));
            } else {
                let d = f.max_affine_diff(g);
                if d > GEOMETRY_TOLERANCE {
                    problems.push(format!("{}: affine differs from {} by up to {d:.3e} mm (tolerance {GEOMETRY_TOLERANCE:e})", path.display(), fp.display()));
                }
            }
        }
    }
}
