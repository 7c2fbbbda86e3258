//! The block reduction the GPU kernels share: a cube of `units` units (a power of two) sums, or
//! takes the maximum of, one value per unit in shared memory.

use cubecl::prelude::*;

/// Units in a reducing cube of the norm and depthwise kernels.
pub(crate) const REDUCE_UNITS: usize = 256;

/// The sum of every unit's `value` over a cube of [`REDUCE_UNITS`] units, returned to every unit.
/// `shared` holds [`REDUCE_UNITS`] values and may be reused as soon as this returns.
#[cube]
pub(crate) fn block_sum(shared: &mut Shared<[f32]>, value: f32, unit: usize) -> f32 {
    block_reduce(shared, value, unit, REDUCE_UNITS, false)
}

/// The sum (`max` false) or the maximum (`max` true) of every unit's `value` over a cube of
/// `units` units, returned to every unit. `shared` holds `units` values and may be reused as soon
/// as this returns.
///
/// The tree's levels are unrolled at compile time: a `while stride > 0 { …; stride /= 2 }` loop
/// compiled to SPIR-V that Vulkan rejects ("Expected operand type cube.ptr, but found
/// cube.index", cubecl 0.11.3).
#[cube]
pub(crate) fn block_reduce(
    shared: &mut Shared<[f32]>,
    value: f32,
    unit: usize,
    #[comptime] units: usize,
    #[comptime] max: bool,
) -> f32 {
    shared[unit] = value;
    sync_cube();
    #[unroll]
    for level in 0..comptime!(units.trailing_zeros() as usize) {
        let stride = comptime!(units >> (level + 1));
        if unit < stride {
            let a = shared[unit];
            let b = shared[unit + stride];
            if max {
                if b > a {
                    shared[unit] = b;
                }
            } else {
                shared[unit] = a + b;
            }
        }
        sync_cube();
    }
    let total = shared[0];
    // Every unit has read the result before any unit writes the next reduction.
    sync_cube();
    total
}
