//! Data-parallel training over MPI (built with `--features mpi`; `.ci/run` installs Open MPI):
//! 2 ranks × 1 crop per step train the same network as 1 process × 2 crops, and a rank that
//! dies or fails alone ends the run with an error instead of a hang.
#![cfg(feature = "mpi")]

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn repux(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_repux"))
        .args(args)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .expect("run repux")
}

/// `mpirun -np 2` as any user (CI runs as root) on however few cores there are.
fn mpirun(args: &[&str]) -> Command {
    let mut c = Command::new("mpirun");
    c.args([
        "-np",
        "2",
        "--oversubscribe",
        "--allow-run-as-root",
        "-x",
        "RAYON_NUM_THREADS=1",
    ])
    .arg(env!("CARGO_BIN_EXE_repux"))
    .args(args)
    .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
    .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A synthetic dataset, its plans and its preprocessed cache.
fn dataset(d: &Path) -> (String, String, String) {
    let ds = d.join("ds");
    common::synth(&ds, 3, 2);
    let plans = d.join("plans.json");
    common::plan(&ds, &plans, "4,4,4", "32,32,32", &[]);
    let cache = d.join("cache");
    common::preprocess(&ds, &plans, &cache);
    (
        ds.display().to_string(),
        plans.display().to_string(),
        cache.display().to_string(),
    )
}

fn train_args<'a>(
    (ds, plans, cache): &'a (String, String, String),
    out: &'a str,
    crops: &'a str,
    iterations: &'a str,
) -> Vec<&'a str> {
    vec![
        "train",
        ds,
        "--plans",
        plans,
        "--cache",
        cache,
        "--fold",
        "all",
        "--out",
        out,
        "--model-preset",
        "micro",
        "--iterations",
        iterations,
        "--val-interval",
        "3",
        "--crops-per-volume",
        crops,
        "--augment",
        "paper",
        "--seed",
        "5",
    ]
}

fn log(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The final weights of two runs: the fraction of them that differ by more than the learning
/// rate (1e-4), and the largest difference.
fn weight_differences(a: &Path, b: &Path) -> (f64, f32) {
    let model = |run: &Path| {
        repux_nn::read_state_dict(&run.join("checkpoint_final/model.safetensors")).unwrap()
    };
    let (wa, wb) = (model(a), model(b));
    assert_eq!(wa.0.len(), wb.0.len());
    let (mut over, mut all, mut max) = (0usize, 0usize, 0f32);
    for (k, (_, va)) in &wa.0 {
        for (x, y) in va.iter().zip(&wb.0[k].1) {
            let d = (x - y).abs();
            over += (d > 1e-4) as usize;
            all += 1;
            max = max.max(d);
        }
    }
    (over as f64 / all as f64, max)
}

#[test]
fn two_ranks_with_one_crop_train_as_one_process_with_two() {
    let d = tempfile::tempdir().unwrap();
    let data = dataset(d.path());
    let one = d.path().join("one");
    let o = repux(&train_args(&data, one.to_str().unwrap(), "2", "3"));
    assert!(o.status.success(), "{}", stderr(&o));
    let two = d.path().join("two");
    let o = mpirun(&train_args(&data, two.to_str().unwrap(), "1", "3"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    let (a, b) = (log(&one), log(&two));
    assert_eq!(a.len(), 3);
    assert_eq!(b.len(), 3, "rank 0 alone writes the log");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x["world_size"], 1);
        assert_eq!(y["world_size"], 2);
        // Tolerance. Iteration 1 runs the same weights on the same crops: only the order of f32
        // sums differs (SyncBatchNorm's statistics, the loss), 1e-6 relative (seen: 1e-7, one
        // ulp). AdamW's first steps then move each weight by about ±lr whatever its gradient's
        // size, so a weight whose gradient is rounding noise can step opposite ways in the two
        // runs, and the losses part further each step: seen 3e-5 and 2.4e-4 at iterations 2
        // and 3, so 1e-3 there. (That the ranks' gradients are summed is checked on the weights
        // of one-step runs below: the losses cannot tell.)
        let tol = if x["iteration"] == 1 { 1e-6 } else { 1e-3 };
        for k in ["loss", "dice_loss", "ce"] {
            let (p, q) = (x[k].as_f64().unwrap(), y[k].as_f64().unwrap());
            assert!(
                (p - q).abs() <= tol * p.abs().max(1e-3),
                "iteration {}: {k} {p} vs {q}",
                x["iteration"]
            );
        }
    }
    let (p, q) = (
        a[2]["val_mean_dice"].as_f64().unwrap(),
        b[2]["val_mean_dice"].as_f64().unwrap(),
    );
    assert!(
        (p - q).abs() < 1e-3,
        "validation split across ranks: {p} vs {q}"
    );
    // Weights. Each run moves a weight at most 3 steps of lr 1e-4 × |m̂/√v̂| ≤ 1.004
    // (Cauchy–Schwarz over the bias-corrected averages of steps 1–3), so the two differ by at
    // most 2 × 3.01e-4 (an AVX-512 machine showed 4.6e-4).
    let (_, max) = weight_differences(&one, &two);
    assert!(max <= 6.1e-4, "weights differ by up to {max}");
    // The gradient all-reduce: after one step, a weight whose step differs between the runs by
    // more than lr stepped the other way, which only a gradient at rounding noise should do
    // (seen: 0.03 % of the weights; with the all-reduce removed, each rank stepping on its own
    // crop's gradient: 4.6 %. After three steps the two are 2.5 % and 9.6 %, too close).
    let one1 = d.path().join("one1");
    let o = repux(&train_args(&data, one1.to_str().unwrap(), "2", "1"));
    assert!(o.status.success(), "{}", stderr(&o));
    let two1 = d.path().join("two1");
    let o = mpirun(&train_args(&data, two1.to_str().unwrap(), "1", "1"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let (flipped, _) = weight_differences(&one1, &two1);
    assert!(
        flipped < 0.005,
        "{:.2} % of the weights stepped the other way after one step",
        100.0 * flipped
    );
    // Either run continues with the other world size (the loader position is global).
    let o = repux(&[
        "train",
        &data.0,
        "--plans",
        &data.1,
        "--out",
        two.to_str().unwrap(),
        "--extend",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = mpirun(&[
        "train",
        &data.0,
        "--plans",
        &data.1,
        "--out",
        one.to_str().unwrap(),
        "--extend",
        "1",
    ])
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let (a, b) = (log(&one), log(&two));
    assert_eq!((a.len(), b.len()), (4, 4));
    assert_eq!(
        (a[3]["world_size"].as_u64(), b[3]["world_size"].as_u64()),
        (Some(2), Some(1))
    );
}

#[test]
fn a_dead_rank_ends_the_run_with_an_error() {
    let d = tempfile::tempdir().unwrap();
    let data = dataset(d.path());
    let run = d.path().join("run");
    let mut child = mpirun(&train_args(&data, run.to_str().unwrap(), "1", "100000"))
        .env("REPUX_MPI_TIMEOUT", "20")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for training to run (rank 0 has logged a step), then kill rank 1.
    let t0 = Instant::now();
    while !run.join("log.jsonl").is_file()
        || std::fs::read_to_string(run.join("log.jsonl"))
            .unwrap()
            .is_empty()
    {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "training never started"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The ranks are mpirun's children (read from /proc: no procps needed).
    let parent = child.id().to_string();
    let mut pids: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let pid = e.ok()?.file_name().to_string_lossy().to_string();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // pid (comm) state ppid …; comm may hold spaces, so read after the last ')'.
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .to_string();
            (ppid == parent).then_some(pid)
        })
        .collect();
    pids.sort();
    assert_eq!(pids.len(), 2, "two ranks under mpirun: {pids:?}");
    assert!(Command::new("kill")
        .args(["-9", &pids[1]])
        .status()
        .unwrap()
        .success());
    let t1 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t1.elapsed() < Duration::from_secs(60),
            "the run hangs after a rank died"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(!status.success(), "a dead rank must fail the run");
}

#[test]
fn a_rank_that_fails_alone_ends_the_run_at_once() {
    let d = tempfile::tempdir().unwrap();
    let data = dataset(d.path());
    let run = d.path().join("run");
    // Only rank 0 draws the progress plot; a folder in its place makes rank 0 fail at the
    // first validation while rank 1 goes on into the next step's collectives.
    std::fs::create_dir_all(run.join("progress.png")).unwrap();
    let t0 = Instant::now();
    let o = mpirun(&train_args(&data, run.to_str().unwrap(), "1", "100000"))
        .env("REPUX_MPI_TIMEOUT", "600")
        .output()
        .unwrap();
    assert!(!o.status.success(), "rank 0's error must fail the run");
    let e = stderr(&o);
    assert!(
        e.contains("rank 0 of 2") && e.contains("progress.png"),
        "{e}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(120),
        "the run waited for the watchdog instead of ending with rank 0's error"
    );
    // The checkpoint written before the plot is complete.
    assert!(run.join("checkpoint_latest").is_dir());
}
