//! One layer per file.

pub mod conv;
pub mod linear;
pub mod norm;
pub mod patch_merging;
pub mod reparam;
pub mod repux_block;
pub mod swin_block;
pub mod swin_stage;
pub mod unetr;
pub mod ux_block;
pub mod window_attention;
