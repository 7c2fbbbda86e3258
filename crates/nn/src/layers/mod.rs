//! One layer per file.

pub mod conv;
pub mod norm;
pub mod reparam;
pub mod repux_block;
pub mod unetr;
pub mod ux_block;
