//! The block reduction the GPU kernels share: a cube of [`REDUCE_UNITS`] units sums one value
//! per unit in shared memory.

use cubecl::prelude::*;

/// Units in a reducing cube.
pub(crate) const REDUCE_UNITS: usize = 256;
/// log2(REDUCE_UNITS): the tree's levels. They are unrolled at compile time: a
/// `while stride > 0 { …; stride /= 2 }` loop compiled to SPIR-V that Vulkan rejects
/// ("Expected operand type cube.ptr, but found cube.index", cubecl 0.11.3).
pub(crate) const REDUCE_LEVELS: usize = 8;

/// The sum of every unit's `value` over the cube, returned to every unit. `shared` holds
/// [`REDUCE_UNITS`] values and may be reused as soon as this returns.
#[cube]
pub(crate) fn block_sum(shared: &mut Shared<[f32]>, value: f32, unit: usize) -> f32 {
    shared[unit] = value;
    sync_cube();
    #[unroll]
    for level in 0..REDUCE_LEVELS {
        let stride = comptime!(REDUCE_UNITS >> (level + 1));
        if unit < stride {
            let v = shared[unit] + shared[unit + stride];
            shared[unit] = v;
        }
        sync_cube();
    }
    let total = shared[0];
    // Every unit has read the total before any unit writes the next sum.
    sync_cube();
    total
}
