//! What the end-to-end tests share: running the real binary, and the synthetic dataset →
//! plans → model set-up most of them start from.
#![allow(dead_code)] // each test binary uses its own part

use std::path::Path;
use std::process::{Command, Output};

/// Runs the `repux` binary under test.
/// Runs the binary with the bf16 level capped at `fp32`, so that `--precision auto` (the
/// default of `predict` and `forward`) means fp32 on every CPU and the outputs these tests
/// compare are fp32's; the bf16 levels are tested in repux-kernels.
pub fn repux(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_repux"))
        .args(args)
        .env("REPUX_BF16_LEVEL", "fp32")
        .output()
        .expect("run repux")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Runs `repux args` and asserts that it succeeds, showing its stderr if not.
pub fn repux_ok(args: &[&str]) -> Output {
    let o = repux(args);
    assert!(o.status.success(), "repux {args:?}: {}", stderr(&o));
    o
}

fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 test path")
}

/// `repux synth`: `cases` phantoms (FLARE's four organs) from `seed` into `out`.
pub fn synth(out: &Path, cases: usize, seed: u64) {
    repux_ok(&[
        "synth",
        "--out",
        s(out),
        "--cases",
        &cases.to_string(),
        "--seed",
        &seed.to_string(),
    ]);
}

/// `repux plan` of `ds` into `out` at `spacing` and `patch` ("x,y,z"), CT window −125…275,
/// with `extra` flags.
pub fn plan(ds: &Path, out: &Path, spacing: &str, patch: &str, extra: &[&str]) {
    let mut args = vec![
        "plan",
        s(ds),
        "-o",
        s(out),
        "--target-spacing",
        spacing,
        "--patch-size",
        patch,
        "--ct-window=-125,275",
    ];
    args.extend_from_slice(extra);
    repux_ok(&args);
}

/// `repux model import`: a freshly initialised `preset` model folder for `plans` at `out`.
pub fn import_model(preset: &str, plans: &Path, out: &Path) {
    repux_ok(&[
        "model",
        "import",
        "--model-config",
        preset,
        "--plans",
        s(plans),
        "--out",
        s(out),
    ]);
}

/// `repux preprocess` of `ds` with `plans` into the cache folder `cache`; its output.
pub fn preprocess(ds: &Path, plans: &Path, cache: &Path) -> Output {
    repux_ok(&[
        "preprocess",
        s(ds),
        "--plans",
        s(plans),
        "--cache",
        s(cache),
    ])
}
