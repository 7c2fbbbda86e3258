//! `repux`: thin commands over the repux crates. Errors carry context with anyhow and exit 1;
//! `dataset check` exits 1 when it finds problems.

#[cfg(unix)]
mod alloc;
mod args;
mod bench;
mod dataset;
mod demo;
mod evaluate;
mod info;
mod model;
mod overlay;
mod plan;
mod predict;
mod preprocess;
mod recipe;
mod synth;
mod train;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Large blocks start on a cache line (see `alloc.rs` for why and how).
#[cfg(unix)]
#[global_allocator]
static GLOBAL: alloc::CacheLineAligned = alloc::CacheLineAligned;

#[derive(Parser)]
#[command(name = "repux", version, about = "3D medical image segmentation with RepUX-Net", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole pipeline on the embedded phantom: synthesise, plan, preprocess, train a reduced
    /// RepUX-Net, predict held-out cases, evaluate (and --compare: the paper's ablation).
    Demo(demo::Args),
    /// Shape, datatype, spacing, affine, orientation and value statistics of an image file.
    Info(info::Args),
    /// Dataset layouts: check integrity.
    #[command(subcommand)]
    Dataset(dataset::Command),
    /// Write the synthetic abdominal CT phantom dataset (nnU-Net v2 layout).
    Synth(synth::Args),
    /// Fingerprint a dataset and write its plans (target spacing, normalisation, patch size).
    Plan(plan::Args),
    /// Preprocess every training case into a cache that training reads without resampling.
    Preprocess(preprocess::Args),
    /// Train a network on a preprocessed dataset (the paper's recipe by default).
    Train(train::Args),
    /// Segment images with a model directory; label maps land on each input's exact grid.
    Predict(predict::Args),
    /// Dice, IoU, HD95, ASD and NSD of a prediction folder against a reference folder.
    Evaluate(evaluate::Args),
    /// Axial, coronal and sagittal slices with a coloured label overlay and legend, as PNG.
    Overlay(overlay::Args),
    /// The paper's set-up for one of its six datasets (flare, amos, msd-spleen, kits, lits,
    /// tcia-pancreas), read in its shipped layout, written as commands and configs.
    Recipe(recipe::Args),
    /// Model inspection.
    #[command(subcommand)]
    Model(model::Command),
    /// One deploy-mode (eval) forward pass of a float32 .npy through a network.
    Forward(model::ForwardArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(bench::Command),
}

/// Every conv and norm allocates its output afresh; with glibc's defaults each large buffer is
/// its own mmap, so every pass page-faults its whole output in again (about a tenth of a
/// paper-size forward went to the kernel's page-fault path). Serve all buffers from the heap
/// (no mmap) and keep up to 1 GiB of freed memory for reuse. Measured with `repux bench model
/// --model-config paper --size 96 --batch 1` against `REPUX_GLIBC_MMAP=1` (glibc's defaults):
/// forward and training step about 15 % faster, peak RSS within 2 %.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("REPUX_GLIBC_MMAP").is_none() {
        // SAFETY: mallopt only tunes the allocator; called before any thread exists.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        }
    }
}

fn main() -> ExitCode {
    // Like other Unix tools, end quietly when stdout is closed (`repux … | head`) instead of
    // panicking on a failed print.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    keep_freed_memory();
    let cli = Cli::parse();
    // The bf16 level cap is read once here, so that a misspelt value fails before any work.
    if let Err(e) = repux_kernels::bf16::cap_level_from_env() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Info(a) => info::run(a),
        Command::Recipe(a) => recipe::run(a),
        Command::Dataset(c) => dataset::run(c),
        Command::Synth(a) => synth::run(a),
        Command::Plan(a) => plan::run(a),
        Command::Preprocess(a) => preprocess::run(a),
        Command::Bench(c) => bench::run(c),
        Command::Model(c) => model::run(c),
        Command::Evaluate(a) => evaluate::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Train(a) => train::run(a),
        Command::Overlay(a) => overlay::run(a),
        Command::Forward(a) => model::forward(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    /// docs/cli.md is generated from the flags, so the reference cannot drift from `--help`:
    /// this test fails when they differ; `REPUX_BLESS=1 cargo test -p repux cli_reference`
    /// rewrites the file.
    #[test]
    fn cli_reference_matches_the_flags() {
        let options = clap_markdown::MarkdownOptions::new()
            .title("repux command reference".into())
            .show_footer(false);
        let generated = format!(
            "<!-- Generated from the clap definitions by `REPUX_BLESS=1 cargo test -p repux \
             cli_reference`; do not edit. -->\n\n{}",
            clap_markdown::help_markdown_custom::<super::Cli>(&options)
        );
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/cli.md");
        if std::env::var_os("REPUX_BLESS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/cli.md differs from the CLI's flags; run `REPUX_BLESS=1 cargo test -p repux \
             cli_reference` and commit docs/cli.md"
        );
    }
}
