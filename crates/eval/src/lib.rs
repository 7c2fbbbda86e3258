//! repux-eval: segmentation metrics (no burn). `edt` is an exact, spacing-aware Euclidean distance
//! transform; `metrics` computes Dice, IoU, HD95, ASD and NSD per class as MONAI/nnU-Net define
//! them; `evaluate` runs folders and writes nnU-Net-shaped summaries.

pub mod edt;
pub mod evaluate;
pub mod metrics;

pub use evaluate::{evaluate_folders, write_summary, CaseResult, Tolerances};
pub use metrics::{class_metrics, ClassMetrics};
