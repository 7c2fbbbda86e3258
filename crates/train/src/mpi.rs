//! The MPI process group (rsmpi) data-parallel training runs on: `mpirun -np N repux train …`,
//! `srun repux train …`. Built with the `mpi` feature only.
//!
//! Every collective runs under a watchdog: a rank that has waited `timeout` for the others
//! (one of them died or hangs) prints which collective and exits non-zero instead of hanging,
//! and the launcher then ends the job. Open MPI's mpirun also ends the job when a rank dies.
//! Checkpoints are written atomically by rank 0, so the last complete one survives.

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use repux_nn::collective::Collective;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Environment variables MPI launchers set (Open MPI, MPICH/Hydra and PMI-2, PMIx, Slurm's srun).
const LAUNCHER_VARS: &[&str] = &[
    "OMPI_COMM_WORLD_SIZE",
    "PMI_SIZE",
    "PMIX_RANK",
    "MPI_LOCALNRANKS",
];

/// Was this process started by an MPI launcher?
pub fn launched() -> bool {
    LAUNCHER_VARS.iter().any(|v| std::env::var_os(v).is_some())
}

pub struct MpiGroup {
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    /// Milliseconds since `start` by which the running collective must finish (0: none).
    deadline: Arc<AtomicU64>,
    start: Instant,
    timeout: Duration,
    /// Nanoseconds spent inside collectives.
    busy: AtomicU64,
    // Dropped last: finalises MPI.
    _universe: Universe,
}

// SAFETY: MPI is initialised with `Threading::Funneled` and repux calls the group only from the
// training thread (the networks' BatchNorm and the optimizer step run there; the data loader's
// threads never touch it), so the communicator handle never crosses threads in use.
unsafe impl Send for MpiGroup {}
unsafe impl Sync for MpiGroup {}

impl MpiGroup {
    /// Initialises MPI and starts the watchdog.
    pub fn init(timeout: Duration) -> Result<MpiGroup, String> {
        let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled)
            .ok_or("MPI could not be initialised (already initialised?)")?;
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        let deadline = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let d = deadline.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(500));
            let due = d.load(Ordering::SeqCst);
            if due != 0 && start.elapsed().as_millis() as u64 > due {
                eprintln!(
                    "error: rank {rank} of {size}: a collective operation has waited {} s for the other ranks; one of them has died or hangs. The last complete checkpoint is the one on disk.",
                    timeout.as_secs()
                );
                std::process::exit(3);
            }
        });
        Ok(MpiGroup {
            world,
            rank,
            size,
            deadline,
            start,
            timeout,
            busy: AtomicU64::new(0),
            _universe: universe,
        })
    }

    /// Ends every rank of the job (MPI_Abort) after printing `error` as this rank's: what a
    /// rank does when it fails alone (say, rank 0 cannot write a checkpoint) while the others
    /// wait for it in a collective. A single-rank run just returns.
    pub fn abort(&self, error: &str) {
        if self.size > 1 {
            eprintln!("error: rank {} of {}: {error}", self.rank, self.size);
            self.world.abort(1)
        }
    }

    fn guarded<T>(&self, f: impl FnOnce() -> T) -> T {
        let due = (self.start.elapsed() + self.timeout).as_millis() as u64;
        self.deadline.store(due.max(1), Ordering::SeqCst);
        let t = Instant::now();
        let r = f();
        self.busy
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.deadline.store(0, Ordering::SeqCst);
        r
    }
}

impl Collective for MpiGroup {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn all_reduce_sum(&self, values: &mut [f32]) {
        let send = values.to_vec();
        self.guarded(|| {
            self.world
                .all_reduce_into(&send[..], values, SystemOperation::sum())
        });
    }
    fn all_reduce_sum_f64(&self, values: &mut [f64]) {
        let send = values.to_vec();
        self.guarded(|| {
            self.world
                .all_reduce_into(&send[..], values, SystemOperation::sum())
        });
    }
    fn broadcast(&self, values: &mut [f32]) {
        self.guarded(|| self.world.process_at_rank(0).broadcast_into(values));
    }
    fn busy_seconds(&self) -> f64 {
        self.busy.load(Ordering::Relaxed) as f64 * 1e-9
    }
}
