use anyhow::Result;
use repux_volume::dataset::{check, Dataset};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Validate a dataset as nnU-Net's integrity check does (labels present, same grid within
    /// 1e-4, declared label values, no NaN/inf); exits 1 when it finds problems.
    Check {
        /// Dataset folder (nnU-Net v2 raw, Decathlon, or images/ + labels/).
        dir: PathBuf,
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn fmt3<T: std::fmt::Display>(v: &[T; 3]) -> String {
    format!("{}x{}x{}", v[0], v[1], v[2])
}

pub fn run(c: Command) -> Result<ExitCode> {
    let Command::Check { dir, json } = c;
    let ds = Dataset::open(&dir)?;
    let report = check(&ds);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let labels = ds
            .labels
            .iter()
            .map(|(n, v)| format!("{v}={n}"))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "dataset {} ({:?}): {} training cases, {} test cases, channels [{}], labels [{labels}]",
            dir.display(),
            ds.layout,
            ds.training.len(),
            ds.test.len(),
            ds.channel_names.join(", ")
        );
        println!(
            "{:<24} {:<16} {:<20} {:<6} {:<16} status",
            "case", "shape", "spacing (mm)", "orient", "label values"
        );
        for c in &report.cases {
            let shape = c.shape.map(|s| fmt3(&s)).unwrap_or_else(|| "-".into());
            let spacing = c
                .spacing
                .map(|s| fmt3(&s.map(|v| format!("{v:.2}"))))
                .unwrap_or_else(|| "-".into());
            let labels = c
                .label_values
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(",");
            let status = if c.problems.is_empty() {
                "ok".to_string()
            } else {
                format!("{} problem(s)", c.problems.len())
            };
            println!(
                "{:<24} {:<16} {:<20} {:<6} {:<16} {}",
                c.id,
                shape,
                spacing,
                c.orientation.as_deref().unwrap_or("-"),
                labels,
                status
            );
        }
        let all: Vec<&String> = report
            .problems
            .iter()
            .chain(report.cases.iter().flat_map(|c| c.problems.iter()))
            .collect();
        if !all.is_empty() {
            println!("\nproblems:");
            for p in &all {
                println!("  - {p}");
            }
        }
        println!(
            "\n{} cases checked, {} problem(s)",
            report.cases.len(),
            report.problem_count()
        );
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
