//! SyncBatchNorm and the differentiable all-reduce, on a group of two threads: two ranks with
//! one sample each give the gradients (summed) and running statistics of one process with both.

use burn::optim::GradientsParams;
use burn::tensor::{Distribution, Tensor};
use repux_nn::collective::{self, Collective};
use repux_nn::layers::repux_block::RepUxBlock;
use repux_nn::{cpu, values};
use std::cell::Cell;
use std::sync::{Arc, Barrier, Mutex};

thread_local! {
    static RANK: Cell<usize> = const { Cell::new(0) };
}

/// Two ranks as two threads: each writes its slot, waits, reads both.
struct Threads {
    barrier: Barrier,
    slots: Mutex<Vec<Vec<f32>>>,
}

impl Threads {
    fn exchange(&self, values: &[f32]) -> Vec<Vec<f32>> {
        let r = RANK.with(Cell::get);
        self.slots.lock().unwrap()[r] = values.to_vec();
        self.barrier.wait();
        let all = self.slots.lock().unwrap().clone();
        self.barrier.wait();
        all
    }
}

impl Collective for Threads {
    fn rank(&self) -> usize {
        RANK.with(Cell::get)
    }
    fn size(&self) -> usize {
        2
    }
    fn all_reduce_sum(&self, v: &mut [f32]) {
        let all = self.exchange(v);
        for (i, x) in v.iter_mut().enumerate() {
            *x = all[0][i] + all[1][i];
        }
    }
    fn all_reduce_sum_f64(&self, v: &mut [f64]) {
        let mut f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
        self.all_reduce_sum(&mut f);
        v.iter_mut().zip(f).for_each(|(a, b)| *a = b as f64);
    }
    fn broadcast(&self, v: &mut [f32]) {
        let all = self.exchange(v);
        v.copy_from_slice(&all[0]);
    }
}

struct Out {
    dx: Vec<f32>,
    grads: Vec<Vec<f32>>,
    running: Vec<Vec<f32>>,
}

/// Forward and backward of `block` on `x` with loss Σ y·t; gradients of the conv weight and
/// bias, γ and β; running mean and variance after the step.
fn step(block: &RepUxBlock, x: Tensor<5>, t: Tensor<5>) -> Out {
    let x = x.require_grad();
    let y = block.forward(x.clone());
    let g = (y * t).sum().backward();
    let dx = values(x.grad(&g).unwrap(), "dx").unwrap();
    let gp = GradientsParams::from_grads(g, block);
    let n = block.norm.as_ref().unwrap();
    let grads = vec![
        values(gp.get::<5>(block.dwconv.weight.id).unwrap(), "dw").unwrap(),
        values(gp.get::<1>(block.dwconv.bias.id).unwrap(), "db").unwrap(),
        values(gp.get::<1>(n.gamma.id).unwrap(), "dgamma").unwrap(),
        values(gp.get::<1>(n.beta.id).unwrap(), "dbeta").unwrap(),
    ];
    let running = vec![
        values(n.running_mean.value(), "mean").unwrap(),
        values(n.running_var.value(), "var").unwrap(),
    ];
    Out { dx, grads, running }
}

fn close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b
        .iter()
        .map(|y| (*y as f64).powi(2))
        .sum::<f64>()
        .max(1e-30);
    // Tolerance: f32 sums in another order, 1e-5 relative L2.
    assert!(
        (num / den).sqrt() < 1e-5,
        "{what}: rel L2 {}",
        (num / den).sqrt()
    );
}

#[test]
fn two_ranks_with_sync_batch_norm_equal_one_process_with_both_samples() {
    let device = cpu().autodiff();
    device.seed(3);
    let shape = [2, 3, 5, 6, 4];
    let x = Tensor::<5>::random(shape, Distribution::Normal(0.5, 1.0), &device);
    let t = Tensor::<5>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let block = RepUxBlock::new(3, 3, Some(1.0), &[], &device);
    let whole = step(&block.clone(), x.clone(), t.clone());

    collective::install(Some(Arc::new(Threads {
        barrier: Barrier::new(2),
        slots: Mutex::new(vec![Vec::new(); 2]),
    })));
    let parts: Vec<Out> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|r| {
                let (block, x, t) = (block.clone(), x.clone(), t.clone());
                s.spawn(move || {
                    RANK.with(|c| c.set(r));
                    step(&block, x.narrow(0, r, 1), t.narrow(0, r, 1))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    collective::install(None);

    let half = whole.dx.len() / 2;
    for (r, p) in parts.iter().enumerate() {
        close(
            &p.dx,
            &whole.dx[r * half..(r + 1) * half],
            &format!("dx of rank {r}"),
        );
        for (i, (a, b)) in p.running.iter().zip(&whole.running).enumerate() {
            close(a, b, &format!("running statistic {i} of rank {r}"));
        }
    }
    // The conv bias before a BatchNorm gets no gradient from the whole batch (the norm removes
    // per-channel constants): each rank's share is not zero, their sum is — rounding noise,
    // compared in absolute terms.
    for (i, v) in whole.grads[1].iter().enumerate() {
        let sum = parts[0].grads[1][i] + parts[1].grads[1][i];
        assert!(v.abs() < 1e-3 && sum.abs() < 1e-3, "db[{i}]: {v} vs {sum}");
    }
    assert!(
        parts[0].grads[1].iter().any(|v| v.abs() > 1e-2),
        "a rank's share is not zero"
    );
    for (i, name) in [(0, "dw"), (2, "dgamma"), (3, "dbeta")] {
        let sum: Vec<f32> = parts[0].grads[i]
            .iter()
            .zip(&parts[1].grads[i])
            .map(|(a, b)| a + b)
            .collect();
        close(&sum, &whole.grads[i], name);
    }
    // Without synchronisation the ranks' statistics would differ from the global ones.
    let alone = step(&block.clone(), x.narrow(0, 0, 1), t.narrow(0, 0, 1));
    let d: f32 = alone.running[0]
        .iter()
        .zip(&whole.running[0])
        .map(|(a, b)| (a - b).abs())
        .sum();
    assert!(
        d > 1e-4,
        "the test data must tell local from global statistics"
    );
}
