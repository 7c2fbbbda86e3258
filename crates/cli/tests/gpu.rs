//! The GPU path through the real binary (built with `--features gpu`; `.ci/run` installs Mesa's
//! software Vulkan driver, lavapipe): a trained model predicts the same label maps on the GPU
//! as on the CPU, `forward` gives the same logits, training runs there, and the device flag's
//! errors name the problem.
#![cfg(feature = "gpu")]

mod common;

use common::{repux, repux_ok, stderr};

/// Voxels of a case allowed to differ between the CPU's and the GPU's label maps: f32 sums in
/// another order can flip a voxel whose two best classes tie to ~1e-6, which happens only on
/// class boundaries. Measured: 0 on the phantom cases here.
const BOUNDARY_VOXELS: usize = 20;

#[test]
fn predict_and_forward_on_the_gpu_match_the_cpu() {
    let d = tempfile::tempdir().unwrap();
    let ds = d.path().join("ds");
    common::synth(&ds, 2, 7);
    let plans = d.path().join("plans.json");
    // 6 mm: each phantom case fits one 32³ window, so each prediction is one network pass on
    // lavapipe.
    common::plan(&ds, &plans, "6,6,6", "32,32,32", &[]);
    let model = d.path().join("model");
    // A few CPU training steps, so the predictions are not one class everywhere.
    repux_ok(&[
        "train",
        ds.to_str().unwrap(),
        "--plans",
        plans.to_str().unwrap(),
        "--fold",
        "all",
        "--out",
        model.to_str().unwrap(),
        "--model-config",
        "micro",
        "--iterations",
        "12",
        "--val-interval",
        "12",
        "--lr",
        "0.01",
        "--device",
        "cpu",
    ]);
    let ckpt = model.join("checkpoint_final");
    let predict = |device: &str| {
        let out = d.path().join(format!("pred_{device}"));
        // Without test-time mirroring: lavapipe runs the network ~100× slower than the CPU.
        let o = repux_ok(&[
            "predict",
            "-i",
            ds.join("imagesTr").to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "-m",
            ckpt.to_str().unwrap(),
            "--tta",
            "none",
            "--device",
            device,
        ]);
        (out, stderr(&o))
    };
    let (cpu, cpu_err) = predict("cpu");
    let (gpu, gpu_err) = predict("gpu:software");
    assert!(cpu_err.contains("device: cpu"), "{cpu_err}");
    assert!(gpu_err.contains("device: gpu (software)"), "{gpu_err}");
    let mut labelled = 0;
    for i in 0..2 {
        let name = format!("phantom_{i:03}.nii.gz");
        let a = repux_volume::read_volume(&cpu.join(&name)).unwrap();
        let b = repux_volume::read_volume(&gpu.join(&name)).unwrap();
        assert_eq!(a.geometry.shape, b.geometry.shape);
        let differ = a.data.iter().zip(&b.data).filter(|(x, y)| x != y).count();
        eprintln!("{name}: {differ} voxels differ between CPU and GPU");
        assert!(differ <= BOUNDARY_VOXELS, "{name}: {differ} voxels differ");
        labelled += a.data.iter().filter(|&&v| v > 0.0).count();
    }
    assert!(labelled > 0, "the model predicts background everywhere");

    // forward: the same logits to relative L2 1e-4 (f32 on both, sums in another order).
    let x: Vec<f32> = (0..32 * 32 * 32)
        .map(|i| ((i % 89) as f32 - 44.0) / 30.0)
        .collect();
    let input = d.path().join("x.npy");
    repux_volume::npy::write(
        &input,
        &[1, 1, 32, 32, 32],
        &x,
        repux_volume::npy::NpyType::F32,
    )
    .unwrap();
    let logits = |device: &str| {
        let out = d.path().join(format!("y_{device}.npy"));
        repux_ok(&[
            "forward",
            "--weights",
            ckpt.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--device",
            device,
        ]);
        repux_volume::npy::read(&out).unwrap().data
    };
    let (a, b) = (logits("cpu"), logits("gpu:software"));
    let num: f64 = a
        .iter()
        .zip(&b)
        .map(|(p, q)| (*p as f64 - *q as f64).powi(2))
        .sum();
    let den: f64 = a.iter().map(|p| (*p as f64).powi(2)).sum();
    let e = (num / den).sqrt();
    assert!(e <= 1e-4, "forward: GPU vs CPU relative L2 {e}");

    // Training on the GPU runs, validates and writes its checkpoint (one step: the 20-step
    // comparison with the CPU is repux-train's test).
    let gpu_model = d.path().join("gpu_model");
    repux_ok(&[
        "train",
        ds.to_str().unwrap(),
        "--plans",
        plans.to_str().unwrap(),
        "--fold",
        "all",
        "--out",
        gpu_model.to_str().unwrap(),
        "--model-config",
        "micro",
        "--iterations",
        "1",
        "--val-interval",
        "1",
        "--device",
        "gpu:software",
    ]);
    assert!(gpu_model
        .join("checkpoint_final/model.safetensors")
        .is_file());
}

#[test]
fn device_errors_name_the_problem() {
    let o = repux(&["bench", "model", "--device", "gpu:99", "--forward-only"]);
    assert!(
        !o.status.success()
            && stderr(&o).contains("--device gpu:99")
            && stderr(&o).contains("hardware GPU adapters"),
        "{}",
        stderr(&o)
    );
    let o = repux(&[
        "bench",
        "model",
        "--device",
        "gpu:software",
        "--precision",
        "bf16",
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("GPU path computes in fp32"),
        "{}",
        stderr(&o)
    );
}
