//! `repux`: thin commands over the repux crates. Errors carry context with anyhow and exit 1;
//! `dataset check` exits 1 when it finds problems.

mod dataset;
mod info;
mod synth;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "repux", version, about = "3D medical image segmentation with RepUX-Net", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Shape, datatype, spacing, affine, orientation and value statistics of an image file.
    Info(info::Args),
    /// Dataset layouts: check integrity.
    #[command(subcommand)]
    Dataset(dataset::Command),
    /// Write the synthetic abdominal CT phantom dataset (nnU-Net v2 layout).
    Synth(synth::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info(a) => info::run(a),
        Command::Dataset(c) => dataset::run(c),
        Command::Synth(a) => synth::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
