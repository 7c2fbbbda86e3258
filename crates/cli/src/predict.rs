use anyhow::{bail, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use repux_infer::{input_cases, resolve_models, Checkpoint, InferError, PredictOptions, Predictor};
use repux_volume::npy::{NpyType, NpyWriter};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// An image file, or a folder of cases (nnU-Net naming `<case>_0000.nii.gz` groups channels).
    #[arg(short, long)]
    pub input: PathBuf,
    /// Output folder: `<case>.nii.gz` (or --output-format) label maps on the input's exact grid,
    /// or `<case>.dcm` DICOM-SEG objects with --output-type dicom-seg.
    #[arg(short, long)]
    pub output: PathBuf,
    /// What to write per case: a label-map image (`nifti`, in --output-format) or a DICOM
    /// Segmentation (`dicom-seg`: binary SEG referencing the source series, one segment per
    /// label with SNOMED CT codes from the plans' label names; needs DICOM series input).
    #[arg(long, value_enum, default_value = "nifti")]
    pub output_type: OutputType,
    /// File format of the label maps: NIfTI (`nii.gz`, `nii`) or MetaImage (`mha`: one
    /// compressed file, as grand-challenge.org takes; `mhd`: header + `.raw`) [default: nii.gz].
    #[arg(long, value_enum)]
    pub output_format: Option<OutputFormat>,
    /// A model directory (config.json, model.safetensors, plans.json), a training folder (the
    /// --out of `repux train`) or a folder of fold_K/ training folders. Repeat -m to ensemble:
    /// the models' softmax probabilities are averaged, as nnU-Net's `-f 0 1 2 3 4` does; they
    /// must share plans and classes.
    #[arg(short, long, required = true)]
    pub model: Vec<PathBuf>,
    /// Which checkpoint of a training folder: final, best or latest [default: final, else best].
    #[arg(long, value_enum)]
    pub checkpoint: Option<CheckpointArg>,
    /// Tile overlap of the sliding window.
    #[arg(long, default_value_t = 0.5)]
    pub overlap: f64,
    /// Test-time augmentation: `flips` (the default, as in nnU-Net) averages the network's
    /// outputs over the 8 mirrorings of each tile (8× the compute); `none` turns it off.
    #[arg(long, value_enum, default_value = "flips")]
    pub tta: Tta,
    /// Tiles per network call.
    #[arg(long, default_value_t = 1)]
    pub tile_batch: usize,
    /// Also write `<case>_probabilities.npy` (float16, classes × D × H × W, native grid),
    /// written one class at a time.
    #[arg(long)]
    pub probabilities: bool,
    /// Keep only the largest connected component of each class.
    #[arg(long)]
    pub largest_component: bool,
    /// GEMM precision: auto (bf16 where this build has a bf16 GEMM faster than fp32 on this
    /// CPU, else fp32), fp32, or bf16 (bf16 operands, fp32 sums, as PyTorch's CPU autocast).
    #[arg(long, value_enum, default_value = "auto")]
    pub precision: crate::args::PrecisionArg,
    #[command(flatten)]
    pub device: crate::args::DeviceArg,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputType {
    Nifti,
    DicomSeg,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum OutputFormat {
    #[value(name = "nii.gz")]
    NiiGz,
    Nii,
    Mha,
    Mhd,
}

impl OutputFormat {
    fn extension(self) -> &'static str {
        match self {
            OutputFormat::NiiGz => "nii.gz",
            OutputFormat::Nii => "nii",
            OutputFormat::Mha => "mha",
            OutputFormat::Mhd => "mhd",
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Tta {
    None,
    Flips,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum CheckpointArg {
    Final,
    Best,
    Latest,
}

pub fn run(a: Args) -> Result<ExitCode> {
    if !(0.0..1.0).contains(&a.overlap) {
        bail!("--overlap {} must be in [0, 1)", a.overlap);
    }
    let which = match a.checkpoint {
        None => Checkpoint::Auto,
        Some(CheckpointArg::Final) => Checkpoint::Final,
        Some(CheckpointArg::Best) => Checkpoint::Best,
        Some(CheckpointArg::Latest) => Checkpoint::Latest,
    };
    if a.output_type == OutputType::DicomSeg && a.output_format.is_some() {
        bail!("--output-format chooses the image format of --output-type nifti; a DICOM-SEG is written as <case>.dcm");
    }
    let format = a.output_format.unwrap_or(OutputFormat::NiiGz);
    crate::args::apply_device(&a.device.device, a.precision)?;
    let models = resolve_models(&a.model, which)?;
    let predictor = Predictor::load_ensemble(&models)?;
    if models.len() > 1 {
        println!(
            "ensemble of {} models: {}",
            models.len(),
            models
                .iter()
                .map(|m| m.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let cases = input_cases(&a.input)?;
    std::fs::create_dir_all(&a.output).map_err(|e| repux_volume::Error::io(&a.output, e))?;
    let opts = PredictOptions {
        overlap: a.overlap,
        tta: matches!(a.tta, Tta::Flips),
        tile_batch: a.tile_batch.max(1),
        largest_component: a.largest_component,
    };
    let multi = MultiProgress::new();
    let case_bar = multi.add(ProgressBar::new(cases.len() as u64));
    case_bar.set_style(ProgressStyle::with_template(
        "cases {bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
    )?);
    let tile_bar = multi.add(ProgressBar::new(0));
    tile_bar.set_style(ProgressStyle::with_template("tiles {bar:30} {pos}/{len}")?);
    let mut failed = Vec::new();
    for (id, files) in &cases {
        case_bar.set_message(id.clone());
        let prob_path = a.output.join(format!("{id}_probabilities.npy"));
        let mut writer: Option<NpyWriter> = None;
        let classes = predictor.classes();
        let result = predictor.predict_with(
            files,
            &opts,
            |done, total| {
                tile_bar.set_length(total as u64);
                tile_bar.set_position(done as u64);
            },
            |c, [d, h, w], values| {
                if !a.probabilities {
                    return Ok(());
                }
                if c == 0 {
                    writer = Some(NpyWriter::create(
                        &prob_path,
                        &[classes, d, h, w],
                        NpyType::F16,
                    )?);
                }
                match writer.as_mut() {
                    Some(wr) => Ok(wr.append(values)?),
                    None => Err(InferError::Case {
                        path: prob_path.clone(),
                        msg: "class probabilities out of order".into(),
                    }),
                }
            },
        );
        let written = result.map_err(anyhow::Error::from).and_then(|p| {
            match a.output_type {
                OutputType::Nifti => {
                    let out = a.output.join(format!("{id}.{}", format.extension()));
                    repux_volume::write_labels(&out, &p.geometry, &p.labels, p.classes as u32 - 1)?;
                }
                OutputType::DicomSeg => {
                    write_dicom_seg(&a.output.join(format!("{id}.dcm")), files, &p, &predictor)?
                }
            }
            if let Some(wr) = writer.take() {
                wr.finish()?;
            }
            Ok(())
        });
        if let Err(e) = written {
            multi.suspend(|| eprintln!("error: case {id}: {e:#}"));
            failed.push(id.clone());
        }
        case_bar.inc(1);
    }
    case_bar.finish_and_clear();
    tile_bar.finish_and_clear();
    println!(
        "{} of {} cases predicted into {}",
        cases.len() - failed.len(),
        cases.len(),
        a.output.display()
    );
    if !failed.is_empty() {
        println!("failed: {}", failed.join(", "));
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes a prediction of a DICOM series as a SEG that references it; segments are named by the
/// plans' labels (background aside).
fn write_dicom_seg(
    out: &Path,
    files: &[PathBuf],
    p: &repux_infer::Prediction,
    predictor: &Predictor,
) -> Result<()> {
    use repux_volume::dicom::seg::{write_seg, Algorithm, Segment};
    let source_dir = match files {
        [one] if one.is_dir() => one,
        _ => bail!(
            "--output-type dicom-seg needs a DICOM series as input: a SEG references its source images ({} is not a series folder)",
            files.first().map_or_else(String::new, |f| f.display().to_string())
        ),
    };
    let source = repux_volume::dicom::source_series(source_dir, None)?;
    if source.geometry.shape != p.geometry.shape {
        bail!(
            "the prediction's grid {:?} is not the series' {:?}",
            p.geometry.shape,
            source.geometry.shape
        );
    }
    let names: std::collections::BTreeMap<u32, &str> = predictor
        .plans
        .labels
        .iter()
        .map(|(name, &v)| (v, name.as_str()))
        .collect();
    let segments: Vec<Segment> = (1..p.classes as u16)
        .map(|c| {
            let fallback = format!("label {c}");
            Segment::named(c, names.get(&u32::from(c)).copied().unwrap_or(&fallback))
        })
        .collect();
    let labels: Vec<u16> = p.labels.iter().map(|&v| v as u16).collect();
    let algo = Algorithm {
        name: "repux".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    write_seg(out, &source, &labels, &segments, &algo)?;
    Ok(())
}
