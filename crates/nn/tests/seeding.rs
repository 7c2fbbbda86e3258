//! A seeded network's weights while other threads build networks. Its own test binary: burn's
//! generator is process-wide, and the other tests' direct draws (random inputs) would change
//! the seeded weights too — only network builds take the init lock.

use repux_nn::{cpu, ModelConfig, Net};

/// A seeded network's weights are its seed's even while other threads build networks (which
/// draw from the same process-wide generator): a trainer's evaluation copy beside another
/// trainer's seeded start once changed that start.
#[test]
fn seeded_weights_are_the_seeds_while_other_threads_build_networks() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let cfg = ModelConfig {
        in_channels: 1,
        out_channels: 2,
        ..ModelConfig::preset("micro").unwrap()
    };
    let weights = |net: &Net| repux_nn::state_dict(net).unwrap().0;
    let want = weights(&Net::seeded(&cfg, &cpu(), 7));
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    drop(Net::new(&cfg, &cpu()));
                }
            });
        }
        for round in 0..30 {
            let got = weights(&Net::seeded(&cfg, &cpu(), 7));
            if got != want {
                done.store(true, Ordering::Relaxed);
                panic!("round {round}: the seeded weights changed");
            }
        }
        done.store(true, Ordering::Relaxed);
    });
}
