//! repux-kernels: hot CPU kernels on plain `f32` slices, multi-threaded with rayon, no burn.
//! Every fast kernel has a slow reference twin (`reference`, plain loops, f64 accumulation) and
//! property tests comparing the two on random shapes.
//!
//! Layout: N × C × D × H × W, C order (last axis fastest), as everywhere in repux.

pub mod bf16;
mod bf16_gemm;
mod bf16_shifted;
pub mod bmm;
mod conv_core;
pub mod dense;
pub mod depthwise;
pub mod gelu;
pub mod linear;
pub mod norm;
mod phases;
pub mod reference;
pub mod shifted;
mod shifted_dw;
mod simd;
pub mod softmax;
pub mod winograd;

pub use bf16::{set_precision, Precision};
pub use conv_core::{poison_fresh_outputs, ConvShape};
pub use depthwise::{DwAlgo, DwShape};
pub use simd::{fp32_isa_name, limit_isa};
