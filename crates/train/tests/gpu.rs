//! Training on the GPU path (`gpu` feature): a 20-step run of the micro RepUX-Net (21³ kernels,
//! BFR) from the same seed and batches tracks the CPU run's losses, with 16³ crops (lavapipe runs
//! a 21³ depthwise conv at ~0.1 GMAC/s). Its own test binary: the compute device is
//! process-wide. Runs on Mesa's software Vulkan (lavapipe) where no GPU is present.
#![cfg(feature = "gpu")]

mod common;

use common::setup;
use repux_nn::device::{resolve, set_compute_device, ComputeDevice, DeviceRequest};
use repux_train::{train, Cases, RunOptions, TrainConfig};

/// Largest relative gap between the two loss curves allowed. Both runs compute in f32 from the
/// same initial weights and batches; only the order of the sums differs (burn's CubeCL convs and
/// repux's GPU depthwise kernels against repux's CPU kernels: 1e-7 at the first step), and 20
/// AdamW steps at lr 1e-2 compound those differences — AdamW divides each gradient by its own
/// running magnitude, so the smallest gradients' rounding counts as much as the largest's.
/// Measured: 5.8e-3 at most over these 20 steps.
const LOSS_TOL: f64 = 0.02;

#[test]
fn twenty_steps_on_the_gpu_track_the_cpu() {
    let gpu = [DeviceRequest::GpuSoftware, DeviceRequest::Gpu(0)]
        .iter()
        .find_map(|r| resolve(r).ok())
        .expect(
            "the gpu build's tests need a Vulkan adapter (apt-get install mesa-vulkan-drivers)",
        );
    eprintln!("GPU run on {}", gpu.description);
    let d = tempfile::tempdir().unwrap();
    let (_, plans, cases) = setup(d.path(), 1, [4.0; 3], [16; 3]);
    let model = repux_nn::ModelConfig {
        in_channels: 1,
        out_channels: plans.num_classes(),
        ..repux_nn::ModelConfig::preset("micro").unwrap()
    };
    let run = |device: &ComputeDevice, name: &str| {
        set_compute_device(device);
        let cfg = TrainConfig {
            iterations: 20,
            val_interval: 20,
            lr: 1e-2,
            augment: "none".into(),
            ..TrainConfig::default()
        };
        let mut losses = Vec::new();
        let outcome = train(
            &model,
            &plans,
            // No validation: the sliding window over a whole case would dominate on lavapipe.
            Cases {
                train: cases.clone(),
                val: &[],
            },
            &cfg,
            &d.path().join(name),
            &RunOptions::default(),
            |l| losses.push(l.loss),
        )
        .unwrap();
        (losses, outcome)
    };
    let (cpu, _) = run(&ComputeDevice::cpu(), "cpu");
    let (gpu_losses, _) = run(&gpu, "gpu");
    set_compute_device(&ComputeDevice::cpu());
    let gaps: Vec<f64> = cpu
        .iter()
        .zip(&gpu_losses)
        .map(|(a, b)| (a - b).abs() / a.abs())
        .collect();
    let worst = gaps.iter().cloned().fold(0.0, f64::max);
    eprintln!("loss cpu {cpu:.5?}\nloss gpu {gpu_losses:.5?}\nlargest relative gap {worst:.2e}");
    assert_eq!(gpu_losses.len(), 20);
    assert!(worst <= LOSS_TOL, "largest relative loss gap {worst}");
    assert!(gaps[0] < 1e-5, "first-step loss gap {}", gaps[0]);
    assert!(gpu_losses[19] < gpu_losses[0], "the GPU run did not learn");
}
