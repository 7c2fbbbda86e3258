//! Forward-then-invert returns the native grid exactly; labels survive where the grid allows;
//! sampler and augmentation behave as configured and are reproducible.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use repux_prep::augment::{augment, AugmentConfig};
use repux_prep::cache::{load_case, preprocess_dataset, CachedCase, CaseMeta, Outcome};
use repux_prep::loader::{make_batch, Loader, LoaderConfig, Shard};
use repux_prep::plan::{fingerprint, make_plans};
use repux_prep::sampler::{sample, PadMode, SamplerConfig};
use repux_prep::{
    invert_labels, invert_probabilities, preprocess, Interp, LabelInterp, Normalization,
    PlanOptions, PrepConfig, ResampleOptions, SeparateZ,
};
use repux_volume::synth::generate_case;
use repux_volume::{Geometry, Volume};
use std::sync::Arc;

fn cfg(target: [f64; 3], labels: LabelInterp, crop: bool) -> PrepConfig {
    PrepConfig {
        target_spacing: target,
        normalization: vec![Normalization::Window {
            a_min: -125.0,
            a_max: 275.0,
        }],
        resampling: ResampleOptions {
            image_interpolation: Interp::Cubic,
            label_interpolation: labels,
            separate_z: SeparateZ::Auto,
            anisotropy_threshold: 3.0,
            crop_to_foreground: crop,
            crop_margin: 2,
        },
    }
}

fn phantom(i: usize) -> (Volume, Volume) {
    let c = generate_case(3, i);
    let lab = Volume::new(c.image.geometry.clone(), 1, c.labels);
    (c.image, lab)
}

#[test]
fn integer_upsampling_roundtrips_labels_exactly_for_ras_and_lps() {
    let mut orients = std::collections::BTreeSet::new();
    for i in 0..4 {
        let (img, lab) = phantom(i);
        orients.insert(img.orientation());
        let s = img.geometry.spacing;
        for li in [LabelInterp::Nearest, LabelInterp::OneHotLinear] {
            let pre = preprocess(
                &img,
                Some(&lab),
                &cfg([s[0] / 2.0, s[1] / 2.0, s[2] / 2.0], li, true),
            )
            .unwrap();
            assert_eq!(pre.image.orientation(), "RAS");
            let back = invert_labels(pre.labels.as_ref().unwrap(), &pre.record);
            assert_eq!(
                pre.record.native, img.geometry,
                "the native grid is recorded exactly"
            );
            let wrong = back.iter().zip(&lab.data).filter(|(a, b)| a != b).count();
            match li {
                // Nearest-neighbour 2× upsampling and back is the identity.
                LabelInterp::Nearest => {
                    assert_eq!(wrong, 0, "case {i}: labels survive 2× upsampling and back")
                }
                // One-hot-linear smooths where three classes meet: allow 0.5 % of the voxels.
                LabelInterp::OneHotLinear => assert!(
                    wrong * 200 < back.len(),
                    "case {i}: {wrong} of {} voxels changed",
                    back.len()
                ),
            }
        }
    }
    assert!(
        orients.contains("LPS") && orients.contains("RAS"),
        "{orients:?}"
    );
}

#[test]
fn arbitrary_spacing_inverts_to_the_native_grid() {
    for i in 0..3 {
        let (img, lab) = phantom(i);
        let pre = preprocess(
            &img,
            Some(&lab),
            &cfg([1.3, 1.1, 2.2], LabelInterp::OneHotLinear, true),
        )
        .unwrap();
        // The preprocessed grid is where the data say it is: voxel centres in world space match
        // resampled_geometry's affine, and its spacing is close to the target.
        for a in 0..3 {
            assert!(
                (pre.image.geometry.spacing[a] - [1.3, 1.1, 2.2][a]).abs() / [1.3, 1.1, 2.2][a]
                    < 0.05
            );
        }
        let back = invert_labels(pre.labels.as_ref().unwrap(), &pre.record);
        assert_eq!(back.len(), lab.data.len());
        // Not bit-exact (the grid does not allow it), but organs overlap well (Dice ≥ 0.85 each).
        for c in 1..5u32 {
            let (mut inter, mut a, mut b) = (0usize, 0usize, 0usize);
            for (x, y) in back.iter().zip(&lab.data) {
                let (x, y) = (*x as u32 == c, *y as u32 == c);
                inter += (x && y) as usize;
                a += x as usize;
                b += y as usize;
            }
            let dice = 2.0 * inter as f64 / (a + b) as f64;
            assert!(dice > 0.85, "case {i} class {c}: round-trip Dice {dice}");
        }
        // Probabilities: one-hot of the labels, inverted, arg-max equals the label inversion
        // where the probability is decisive.
        let pl = pre.labels.as_ref().unwrap();
        let n = pl.len();
        let mut probs = vec![0f32; 5 * n];
        for (v, &l) in pl.iter().enumerate() {
            probs[l as usize * n + v] = 1.0;
        }
        let inv = invert_probabilities(&probs, 5, &pre.record);
        let m = lab.data.len();
        assert_eq!(inv.len(), 5 * m);
        for v in (0..m).step_by(97) {
            let s: f32 = (0..5).map(|c| inv[c * m + v]).sum();
            assert!(
                (s - 1.0).abs() < 1e-4,
                "probabilities sum to 1 on the native grid"
            );
        }
    }
}

#[test]
fn crop_removes_air_and_is_undone() {
    let (img, lab) = phantom(1);
    let s = img.geometry.spacing;
    let pre = preprocess(&img, Some(&lab), &cfg(s, LabelInterp::Nearest, true)).unwrap();
    let c = &pre.record.crop;
    assert!(!c.is_identity(), "air around the body is cropped");
    assert!(pre.image.data.iter().any(|&v| v > 0.0));
    let back = invert_labels(pre.labels.as_ref().unwrap(), &pre.record);
    let wrong = back.iter().zip(&lab.data).filter(|(a, b)| a != b).count();
    assert_eq!(
        wrong, 0,
        "same spacing: crop + reorientation round-trip exactly"
    );
}

#[test]
fn bad_inputs_are_errors() {
    let (img, lab) = phantom(0);
    let mut nan = img.clone();
    nan.data[10] = f32::NAN;
    let e = preprocess(&nan, Some(&lab), &cfg([1.0; 3], LabelInterp::Nearest, true))
        .unwrap_err()
        .to_string();
    assert!(e.contains("NaN"), "{e}");
    let g = Geometry {
        shape: [2, 2, 2],
        ..img.geometry.clone()
    };
    let small = Volume::new(g, 1, vec![0.0; 8]);
    let e = preprocess(
        &img,
        Some(&small),
        &cfg([1.0; 3], LabelInterp::Nearest, true),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("label map does not match"), "{e}");
}

/// A case short of a channel the dataset declares, or of one the other cases have, stops the
/// fingerprint with the case named, instead of leaving that channel's statistics to the rest.
#[test]
fn fingerprint_refuses_cases_with_missing_channels() {
    let d = tempfile::tempdir().unwrap();
    repux_volume::synth::write_dataset(d.path(), 3, 21, |_| {}).unwrap();
    let ds = repux_volume::Dataset::open(d.path()).unwrap();
    let mut declared = ds.clone();
    declared.channel_names.push("MR".into());
    let e = fingerprint(&declared, 0).unwrap_err().to_string();
    assert!(
        e.contains(&format!("case {}: 1 image channel(s)", ds.training[0].id))
            && e.contains("has 2 (channel_names)"),
        "{e}"
    );
    let mut uneven = ds.clone();
    let extra = uneven.training[0].images[0].clone();
    uneven.training[0].images.push(extra);
    let e = fingerprint(&uneven, 0).unwrap_err().to_string();
    assert!(
        e.contains(&format!("case {}: 1 image channel(s)", ds.training[1].id))
            && e.contains("has 2 (its other cases)"),
        "{e}"
    );
}

fn cached(d: &std::path::Path) -> Vec<CachedCase> {
    repux_volume::synth::write_dataset(d, 3, 21, |_| {}).unwrap();
    let ds = repux_volume::Dataset::open(d).unwrap();
    let fp = fingerprint(&ds, 0).unwrap();
    let plans = make_plans(
        &ds,
        fp,
        &PlanOptions {
            target_spacing: Some([1.6, 1.6, 3.0]),
            patch_size: [32, 32, 32],
            ..PlanOptions::default()
        },
    )
    .unwrap();
    let out = d.join("pre");
    let r = preprocess_dataset(&ds, &plans, &out, false, |_, _| {}).unwrap();
    assert!(r.iter().all(|(_, o)| *o == Outcome::Written));
    // Re-running skips; touching a source redoes that case only.
    let r = preprocess_dataset(&ds, &plans, &out, false, |_, _| {}).unwrap();
    assert!(r.iter().all(|(_, o)| *o == Outcome::UpToDate));
    let lp = ds.training[1].label.clone().unwrap();
    let bytes = std::fs::read(&lp).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&lp, bytes).unwrap();
    let r = preprocess_dataset(&ds, &plans, &out, false, |_, _| {}).unwrap();
    assert_eq!(r.iter().filter(|(_, o)| *o == Outcome::Written).count(), 1);
    ds.training
        .iter()
        .map(|c| load_case(&out, &c.id).unwrap())
        .collect()
}

#[test]
fn sampler_fraction_padding_and_reproducibility() {
    let d = tempfile::tempdir().unwrap();
    let cases = cached(d.path());
    let case = &cases[0];
    let mut cfg = SamplerConfig::new([32, 32, 32]);
    cfg.foreground_fraction = 0.5;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let draws = 400;
    let (mut forced, mut with_fg) = (0, 0);
    for _ in 0..draws {
        let p = sample(case, &cfg, &mut rng);
        forced += p.forced_foreground as usize;
        with_fg += p.labels.iter().any(|&l| l > 0) as usize;
        if p.forced_foreground {
            assert!(
                p.labels.iter().any(|&l| l > 0),
                "a forced crop contains foreground"
            );
        }
    }
    let frac = forced as f64 / draws as f64;
    // Binomial(400, 0.5): 4.5 σ ≈ 0.11.
    assert!((frac - 0.5).abs() < 0.11, "forced fraction {frac}");
    assert!(with_fg >= forced);
    // Class-uniform sampling reaches the thin organ far more often than its voxel share.
    cfg.class_uniform = true;
    cfg.foreground_fraction = 1.0;
    let hits = (0..200)
        .filter(|_| sample(case, &cfg, &mut rng).labels.contains(&4))
        .count();
    assert!(hits > 40, "pancreas in {hits}/200 class-uniform crops");
    // A volume smaller than the patch is padded, not an error.
    let mut tiny = case.clone();
    let meta = CaseMeta {
        shape: [5, 6, 7],
        ..case.meta.clone()
    };
    tiny.meta = meta;
    tiny.image = (0..210).map(|v| v as f32).collect();
    tiny.labels = vec![1; 210];
    tiny.meta.class_locations = [(1u32, vec![[2u32, 3, 3]])].into_iter().collect();
    for pad in [PadMode::Zero, PadMode::Edge] {
        let p = sample(
            &tiny,
            &SamplerConfig {
                pad,
                ..SamplerConfig::new([16, 16, 16])
            },
            &mut rng,
        );
        assert_eq!(p.image.len(), 16 * 16 * 16);
        assert_eq!(
            p.labels.iter().filter(|&&l| l == 1).count(),
            210,
            "the whole tiny volume is inside the patch"
        );
        if pad == PadMode::Edge {
            assert!(p.image.iter().all(|&v| v >= 0.0) && p.image.contains(&209.0));
        }
    }
}

#[test]
fn augmentation_and_loader_are_seeded() {
    let d = tempfile::tempdir().unwrap();
    let cases = cached(d.path());
    let cfg = SamplerConfig::new([32, 32, 32]);
    for aug in [AugmentConfig::paper(), AugmentConfig::nnunet()] {
        let run = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut p = sample(&cases[1], &cfg, &mut rng);
            augment(&mut p, &aug, &mut rng);
            p
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5).image, run(6).image);
    }
    // Labels stay a subset of the case's labels after the affine transform.
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut p = sample(&cases[0], &cfg, &mut rng);
    augment(&mut p, &AugmentConfig::paper(), &mut rng);
    assert!(p.labels.iter().all(|&l| l <= 4));
    // The loader delivers the same batches in the same order for any number of workers.
    let shared = Arc::new(cases);
    let lc = |workers| LoaderConfig {
        sampler: cfg.clone(),
        augment: AugmentConfig::paper(),
        volumes_per_step: 1,
        crops_per_volume: 2,
        seed: 9,
        workers,
        prefetch: 2,
        shard: Shard::default(),
    };
    let a: Vec<_> = Loader::spawn(shared.clone(), lc(1), 3).take(5).collect();
    let b: Vec<_> = Loader::spawn(shared.clone(), lc(3), 3).take(5).collect();
    assert_eq!(a, b);
    assert_eq!(a[0].iteration, 3);
    assert_eq!(a[0], make_batch(&shared, &lc(1), 3));
    assert_eq!(a[0].image.len(), 2 * 32 * 32 * 32);
    // Two ranks × 1 crop make exactly the crops of one process × 2 crops, rank r crop r.
    let n = 32 * 32 * 32;
    for t in [0, 7] {
        let whole = make_batch(&shared, &lc(1), t);
        for rank in 0..2 {
            let part = make_batch(
                &shared,
                &LoaderConfig {
                    crops_per_volume: 1,
                    shard: Shard { rank, world: 2 },
                    ..lc(1)
                },
                t,
            );
            assert_eq!(
                part.image,
                whole.image[rank * n..(rank + 1) * n],
                "t {t} rank {rank}"
            );
            assert_eq!(part.labels, whole.labels[rank * n..(rank + 1) * n]);
            assert_eq!(part.cases[0], whole.cases[rank]);
        }
    }
}
