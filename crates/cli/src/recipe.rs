//! `repux recipe NAME --data DIR`: the paper's set-up for one of its six datasets, written as
//! files — `train.toml` (the paper's recipe), `model.json` (RepUX-Net with the dataset's classes),
//! `labels.json`, `commands.sh` (plan → preprocess → train → predict → evaluate, and for the
//! external test sets, scoring the FLARE model with the label mapping) — after checking that
//! DIR reads in the layout the dataset ships in.

use anyhow::{Context, Result};
use repux_volume::Dataset;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Name {
    Flare,
    Amos,
    MsdSpleen,
    Kits,
    Lits,
    TciaPancreas,
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(value_enum)]
    pub name: Name,
    /// The dataset as downloaded (its shipped layout).
    #[arg(long)]
    pub data: PathBuf,
    /// Where to write the recipe files [default: recipe-NAME].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// FLARE 2021's classes (the paper's training set): what a FLARE model predicts.
const FLARE: &[(&str, u32)] = &[("liver", 1), ("kidney", 2), ("spleen", 3), ("pancreas", 4)];

struct Recipe {
    key: &'static str,
    title: &'static str,
    layout: &'static str,
    spacing: [f64; 3],
    labels: &'static [(&'static str, u32)],
    /// External test of the FLARE model: (prediction map, reference map) for `repux evaluate`.
    flare_test: Option<(&'static str, &'static str)>,
    note: &'static str,
}

fn recipe(n: Name) -> Recipe {
    match n {
        Name::Flare => Recipe { key: "flare", title: "FLARE 2021 (361 abdominal CT, 4 organs) — the paper's main training set", layout: "images/ + labels/ folders (FLARE21's TrainingImg/TrainingMask renamed, or as nnU-Net v2 imagesTr/labelsTr)", spacing: [1.0, 1.0, 1.2], labels: FLARE, flare_test: None, note: "Paper: mean Dice 0.944 (5-fold)." },
        Name::Amos => Recipe {
            key: "amos",
            title: "AMOS 2022 (CT, 15 organs) — trained from scratch, or fine-tuned from FLARE with a new head",
            layout: "dataset.json + imagesTr/labelsTr (Decathlon style, as AMOS ships)",
            spacing: [1.5, 1.5, 2.0],
            labels: &[("spleen", 1), ("right kidney", 2), ("left kidney", 3), ("gallbladder", 4), ("esophagus", 5), ("liver", 6), ("stomach", 7), ("aorta", 8), ("postcava", 9), ("pancreas", 10), ("right adrenal gland", 11), ("left adrenal gland", 12), ("duodenum", 13), ("bladder", 14), ("prostate/uterus", 15)],
            flare_test: None,
            note: "Paper: 0.902 from scratch, 0.911 fine-tuned from FLARE (--init-from FLARE_MODEL --new-head).",
        },
        Name::MsdSpleen => Recipe { key: "msd-spleen", title: "MSD Task09 Spleen — external test of the FLARE model", layout: "Decathlon dataset.json + imagesTr/labelsTr", spacing: [1.0, 1.0, 1.2], labels: &[("spleen", 1)], flare_test: Some(("3=1", "1=1")), note: "Paper (FLARE model, no retraining): 0.932." },
        Name::Kits => Recipe { key: "kits", title: "KiTS (kidney) — external test of the FLARE model", layout: "case_XXXXX/imaging.nii.gz + segmentation.nii.gz folders (optionally under data/)", spacing: [1.0, 1.0, 1.2], labels: &[("kidney", 1)], flare_test: Some(("2=1", "1=1,2=1,3=1")), note: "The reference kidney is kidney + tumour (+ cyst), as FLARE labels the whole organ. Paper: 0.847." },
        Name::Lits => Recipe { key: "lits", title: "LiTS (liver) — external test of the FLARE model", layout: "volume-N.nii + segmentation-N.nii (in the folder or its Training Batch subfolders)", spacing: [1.0, 1.0, 1.2], labels: &[("liver", 1)], flare_test: Some(("1=1", "1=1,2=1")), note: "The reference liver is liver + tumour. Paper: 0.949." },
        Name::TciaPancreas => Recipe {
            key: "tcia-pancreas",
            title: "TCIA Pancreas-CT — external test of the FLARE model",
            layout: "DICOM series in PANCREAS_NNNN/<study>/<series>/ + labelNNNN.nii.gz, as NBIA and the TCIA label release ship them (anywhere up to three folders down)",
            spacing: [1.0, 1.0, 1.2],
            labels: &[("pancreas", 1)],
            flare_test: Some(("4=1", "1=1")),
            note: "Paper: 0.779.",
        },
    }
}

pub fn run(a: Args) -> Result<ExitCode> {
    let r = recipe(a.name);
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("recipe-{}", r.key)));
    println!("{}", r.title);
    println!("expected layout: {}", r.layout);
    let ds = Dataset::open(&a.data).with_context(|| {
        format!(
            "reading {} as the {} dataset (expected: {})",
            a.data.display(),
            r.key,
            r.layout
        )
    })?;
    println!(
        "read {}: {:?} layout, {} training cases, {} test cases",
        a.data.display(),
        ds.layout,
        ds.training.len(),
        ds.test.len()
    );
    std::fs::create_dir_all(&out).map_err(|e| repux_volume::Error::io(&out, e))?;
    write_files(&r, &ds, &a.data, &out)?;
    println!(
        "recipe written to {}: commands.sh, train.toml, model.json, labels.json",
        out.display()
    );
    println!("{}", r.note);
    Ok(ExitCode::SUCCESS)
}

fn abs(p: &Path) -> String {
    std::fs::canonicalize(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

/// Single-quoted for sh (a quote inside becomes '\'').
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// `ln -sf` lines putting a case's first image and its label under nnU-Net names; a DICOM
/// series folder is linked as `<case>/`, which `predict -i` reads as the case of that name.
fn link_case(c: &mut String, t: &repux_volume::Case, inputs: &str, references: &str) {
    if t.images[0].is_dir() {
        let _ = writeln!(
            c,
            "ln -sfn {} \"{inputs}/{}\"",
            sh_quote(&abs(&t.images[0])),
            t.id
        );
    } else {
        let e = repux_volume::dataset::ending_of(&t.images[0]);
        let _ = writeln!(
            c,
            "ln -sf {} \"{inputs}/{}_0000{e}\"",
            sh_quote(&abs(&t.images[0])),
            t.id
        );
    }
    if let Some(l) = &t.label {
        let _ = writeln!(
            c,
            "ln -sf {} \"{references}/{}{}\"",
            sh_quote(&abs(l)),
            t.id,
            repux_volume::dataset::ending_of(l)
        );
    }
}

fn write_files(r: &Recipe, ds: &Dataset, data: &Path, out: &Path) -> Result<()> {
    let classes = r.labels.len() + 1;
    let w = |name: &str, text: &str| {
        repux_volume::fs::write_bytes_atomic(&out.join(name), text.as_bytes())
    };
    let mut labels = serde_json::Map::new();
    labels.insert("background".into(), 0.into());
    for (n, v) in r.labels {
        labels.insert(n.to_string(), (*v).into());
    }
    w(
        "labels.json",
        &serde_json::to_string_pretty(&serde_json::json!({ "labels": labels }))?,
    )?;
    w(
        "model.json",
        &serde_json::to_string_pretty(
            &serde_json::json!({"arch": "repuxnet", "in_channels": 1, "out_channels": classes, "kernel_size": 21, "reparam": "bfr"}),
        )?,
    )?;
    w("train.toml", "# The paper's recipe (Lee et al., MICCAI 2023): AdamW 1e-4, weight decay 0.01, no schedule,\n# DiceCE 1:1, 1 volume x 2 crops of 96^3 per step (50 % foreground), paper augmentation.\nmodel = \"model.json\"\niterations = 60000\nval_interval = 500\nlr = 1e-4\nweight_decay = 0.01\nschedule = \"constant\"\ncrops_per_volume = 2\naugment = \"paper\"\n")?;
    let data_abs =
        std::fs::canonicalize(data).with_context(|| format!("resolving {}", data.display()))?;
    let d = sh_quote(&data_abs.display().to_string());
    let s = r.spacing;
    let mut c = String::new();
    let _ = writeln!(
        c,
        "#!/bin/sh\n# {}\n# Dataset: {} ({:?} layout, {} training cases)",
        r.title,
        data_abs.display(),
        ds.layout,
        ds.training.len()
    );
    let _ = writeln!(c, "# Runs from any folder; the variables below may be set in the environment.\nset -eu\ncd \"$(dirname \"$0\")\"");
    let _ = writeln!(c, "REPUX=\"${{REPUX:-repux}}\"\nDATA={d}\nSPACING=\"${{SPACING:-{},{},{}}}\"\nPATCH=\"${{PATCH:-96,96,96}}\"", s[0], s[1], s[2]);
    let _ = writeln!(c, "\"$REPUX\" dataset check \"$DATA\"");
    let _ = writeln!(c, "\"$REPUX\" plan \"$DATA\" -o plans.json --target-spacing \"$SPACING\" --patch-size \"$PATCH\" --ct-window=-125,275");
    let _ = writeln!(
        c,
        "\"$REPUX\" preprocess \"$DATA\" --plans plans.json --cache preprocessed"
    );
    match r.flare_test {
        None => {
            let _ = writeln!(c, "FOLDS=\"${{FOLDS:-0 1 2 3 4}}\"");
            let _ = writeln!(c, "for f in $FOLDS; do");
            let _ = writeln!(c, "  \"$REPUX\" train \"$DATA\" --plans plans.json --fold \"$f\" --out \"runs/fold_$f\" --config train.toml --cache preprocessed");
            let _ = writeln!(c, "done");
            if r.key == "amos" {
                let _ = writeln!(c, "# fine-tuning from FLARE instead (the paper's 0.911):\n# \"$REPUX\" train \"$DATA\" --plans plans.json --fold 0 --out runs_ft/fold_0 --config train.toml --init-from FLARE_RUN_FOLDER --new-head");
            }
            // Held-out cases: the dataset's own labelled test set, else the user's.
            let labelled_test: Vec<_> = ds.test.iter().filter(|t| t.label.is_some()).collect();
            if !labelled_test.is_empty() {
                let _ = writeln!(c, "# The dataset's labelled test cases, linked under nnU-Net names:\nmkdir -p test_inputs test_references");
                for t in &labelled_test {
                    link_case(&mut c, t, "test_inputs", "test_references");
                }
                let _ = writeln!(c, "TEST_IMAGES=\"${{TEST_IMAGES:-test_inputs}}\"\nTEST_LABELS=\"${{TEST_LABELS:-test_references}}\"");
            } else {
                let _ = writeln!(
                    c,
                    "TEST_IMAGES=\"${{TEST_IMAGES:-}}\"\nTEST_LABELS=\"${{TEST_LABELS:-}}\""
                );
                let _ = writeln!(c, "if [ -z \"$TEST_IMAGES\" ] || [ -z \"$TEST_LABELS\" ]; then\n  echo \"trained runs/fold_*; set TEST_IMAGES and TEST_LABELS (held-out images and labels) to predict and evaluate\"\n  exit 0\nfi");
            }
            let _ = writeln!(
                c,
                "# The folds' ensemble (softmax average), with test-time mirroring:"
            );
            let _ = writeln!(
                c,
                "\"$REPUX\" predict -i \"$TEST_IMAGES\" -o predictions -m runs"
            );
            let _ = writeln!(c, "\"$REPUX\" evaluate --pred predictions --ref \"$TEST_LABELS\" --labels labels.json");
        }
        Some((pm, rm)) => {
            let _ = writeln!(c, "FLARE_MODEL=\"${{FLARE_MODEL:?set FLARE_MODEL to the FLARE model (a training folder, a folder of fold_K runs, or a model directory)}}\"");
            let _ = writeln!(c, "# External test: the FLARE model, unchanged (FLARE classes: liver 1, kidney 2, spleen 3, pancreas 4).");
            let _ = writeln!(c, "# Every labelled case, linked into one input and one reference folder under nnU-Net names:");
            let _ = writeln!(c, "mkdir -p inputs references");
            for t in &ds.training {
                link_case(&mut c, t, "inputs", "references");
            }
            let _ = writeln!(
                c,
                "\"$REPUX\" predict -i inputs -o predictions -m \"$FLARE_MODEL\""
            );
            let _ = writeln!(c, "\"$REPUX\" evaluate --pred predictions --ref references --pred-map {pm} --ref-map {rm} --labels labels.json");
            let _ = writeln!(c, "# Training on this dataset itself works as for FLARE: repux plan/preprocess/train with model.json and train.toml.");
        }
    }
    w("commands.sh", &c)?;
    Ok(())
}
