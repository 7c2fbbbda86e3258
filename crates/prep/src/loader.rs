//! A background pool of sampling threads that keeps the trainer fed with augmented batches.
//!
//! Determinism: batch `t` is made from an rng seeded by `(seed, t)` only, so the stream of
//! batches is the same for any number of workers. The volumes of step `t` come from that rng;
//! crop `j` of volume `v` from its own rng seeded by `(seed, t, v, j)`, so a data-parallel rank
//! makes just its share of the global batch ([`Shard`]) and `W` ranks × `k` crops see exactly
//! the crops one process with `W·k` crops per volume sees. Worker `w` makes batches `t ≡ w (mod W)` and
//! sends them through its own bounded channel; the consumer reads the channels round-robin, so
//! batches arrive in order and at most `W × (prefetch + 1)` are in memory.

use crate::augment::{augment, AugmentConfig};
use crate::cache::CachedCase;
use crate::sampler::{sample, SamplerConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

#[derive(Clone, Debug)]
pub struct LoaderConfig {
    pub sampler: SamplerConfig,
    pub augment: AugmentConfig,
    /// Volumes drawn per step.
    pub volumes_per_step: usize,
    /// Crops per volume (the paper: 1 volume × 2 crops).
    pub crops_per_volume: usize,
    pub seed: u64,
    pub workers: usize,
    pub prefetch: usize,
    /// This process's share of each step's crops (data-parallel training).
    pub shard: Shard,
}

/// Rank `rank` of `world` takes crops `rank·k .. (rank+1)·k` of each volume, where `k` is
/// `crops_per_volume` (the per-rank count) and the global step has `world·k` per volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub rank: usize,
    pub world: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { rank: 0, world: 1 }
    }
}

fn mix(a: u64, b: u64) -> u64 {
    // splitmix64 of a ^ rotated b: distinct streams for distinct (a, b).
    let mut z = a ^ b.rotate_left(29) ^ 0x9E37_79B9_7F4A_7C15;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One training step's data: B × C × P images and B × P labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub iteration: u64,
    pub batch: usize,
    pub channels: usize,
    pub patch: [usize; 3],
    pub image: Vec<f32>,
    pub labels: Vec<u16>,
    /// Case ids, one per crop.
    pub cases: Vec<String>,
}

/// Makes batch `t` (pure function of the cases, the config and `t`).
pub fn make_batch(cases: &[CachedCase], cfg: &LoaderConfig, t: u64) -> Batch {
    let mut rng = ChaCha8Rng::seed_from_u64(
        cfg.seed
            ^ t.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(0xD1B5_4A32_D192_ED03),
    );
    let b = cfg.volumes_per_step * cfg.crops_per_volume;
    let p = cfg.sampler.patch;
    let channels = cases.first().map(|c| c.meta.channels).unwrap_or(1);
    let mut batch = Batch {
        iteration: t,
        batch: b,
        channels,
        patch: p,
        image: Vec::with_capacity(b * channels * p.iter().product::<usize>()),
        labels: Vec::new(),
        cases: Vec::new(),
    };
    let k = cfg.crops_per_volume;
    for v in 0..cfg.volumes_per_step {
        let case = &cases[rng.gen_range(0..cases.len())];
        for i in 0..k {
            let j = cfg.shard.rank * k + i;
            let mut crop_rng =
                ChaCha8Rng::seed_from_u64(mix(mix(cfg.seed, t), ((v as u64) << 32) | j as u64));
            let mut patch = sample(case, &cfg.sampler, &mut crop_rng);
            augment(&mut patch, &cfg.augment, &mut crop_rng);
            batch.image.extend_from_slice(&patch.image);
            batch.labels.extend_from_slice(&patch.labels);
            batch.cases.push(case.meta.id.clone());
        }
    }
    batch
}

pub struct Loader {
    receivers: Vec<Receiver<Batch>>,
    next: u64,
    start: u64,
    _workers: Vec<JoinHandle<()>>,
}

impl Loader {
    /// Starts the pool; the first batch delivered is iteration `start` (for exact resume).
    pub fn spawn(cases: Arc<Vec<CachedCase>>, cfg: LoaderConfig, start: u64) -> Loader {
        let w = cfg.workers.max(1);
        let mut receivers = Vec::with_capacity(w);
        let mut handles = Vec::with_capacity(w);
        for id in 0..w as u64 {
            let (tx, rx) = sync_channel(cfg.prefetch.max(1));
            let (cases, cfg) = (cases.clone(), cfg.clone());
            handles.push(std::thread::spawn(move || {
                let mut t = start + id;
                // A send fails once the Loader is dropped: the worker ends.
                while tx.send(make_batch(&cases, &cfg, t)).is_ok() {
                    t += w as u64;
                }
            }));
            receivers.push(rx);
        }
        Loader {
            receivers,
            next: start,
            start,
            _workers: handles,
        }
    }
}

impl Iterator for Loader {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        let w = self.receivers.len() as u64;
        let b = self.receivers[((self.next - self.start) % w) as usize]
            .recv()
            .ok()?;
        self.next += 1;
        Some(b)
    }
}
