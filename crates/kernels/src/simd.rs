//! Run-time ISA dispatch for the hand-written element-wise loops (Winograd transforms, fused
//! norm passes): the same Rust body compiled three times, for AVX-512, AVX2 and baseline.

use std::sync::atomic::{AtomicU8, Ordering};

/// The widest vector ISA this CPU has (the crate is built for baseline x86-64, so without
/// this the element-wise loops would run on 4-wide SSE).
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Isa {
    Base,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// The widest ISA the loops may use: 0 baseline, 1 AVX2, 2 AVX-512 (the default: whatever the
/// CPU has).
static MAX_ISA: AtomicU8 = AtomicU8::new(2);

/// Caps the ISA the hand-written loops dispatch to (0 baseline, 1 AVX2, 2 AVX-512, the default).
/// Results do not depend on it (one Rust body, no fused multiply-adds, fixed summation order);
/// the property tests run every level against the reference.
pub fn limit_isa(level: u8) {
    MAX_ISA.store(level.min(2), Ordering::Relaxed);
}

pub(crate) fn isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        let cap = MAX_ISA.load(Ordering::Relaxed);
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        if cap >= 2
            && avx2
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512vl")
        {
            return Isa::Avx512;
        }
        if cap >= 1 && avx2 {
            return Isa::Avx2;
        }
    }
    Isa::Base
}

/// The vector ISA of the fp32 element-wise loops (and of the `gemm` crate's fp32 kernels, which
/// dispatch the same way): `avx512`, `avx2` or `base`.
pub fn fp32_isa_name() -> &'static str {
    match isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => "avx512",
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => "avx2",
        Isa::Base => "base",
    }
}

/// Defines `$name` calling `$imp` compiled for the ISA picked at run time (the body is inlined
/// into a `#[target_feature]` copy per ISA, so the compiler vectorises it for that width).
macro_rules! isa_dispatch_ {
    // `$imp(isa; …)`: the body also gets the ISA (to pick intrinsics it cannot express as
    // plain loops).
    ($vis:vis $name:ident => $imp:ident (isa; $($arg:ident: $ty:ty),*)) => {
        $vis fn $name(isa: $crate::simd::Isa, $($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                        unsafe fn v4(isa: $crate::simd::Isa, $($arg: $ty),*) {
                    $imp(isa, $($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                        unsafe fn v3(isa: $crate::simd::Isa, $($arg: $ty),*) {
                    $imp(isa, $($arg),*)
                }
                match isa {
                    // SAFETY: `isa()` detected these features on this CPU.
                    $crate::simd::Isa::Avx512 => return unsafe { v4(isa, $($arg),*) },
                    $crate::simd::Isa::Avx2 => return unsafe { v3(isa, $($arg),*) },
                    $crate::simd::Isa::Base => {}
                }
            }
            $imp(isa, $($arg),*)
        }
    };
    ($vis:vis $name:ident => $imp:ident ($($arg:ident: $ty:ty),*)) => {
        $vis fn $name(isa: $crate::simd::Isa, $($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                        unsafe fn v4($($arg: $ty),*) {
                    $imp($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                        unsafe fn v3($($arg: $ty),*) {
                    $imp($($arg),*)
                }
                match isa {
                    // SAFETY: `isa()` detected these features on this CPU.
                    $crate::simd::Isa::Avx512 => return unsafe { v4($($arg),*) },
                    $crate::simd::Isa::Avx2 => return unsafe { v3($($arg),*) },
                    $crate::simd::Isa::Base => {}
                }
            }
            let _ = isa;
            $imp($($arg),*)
        }
    };
}

pub(crate) use isa_dispatch_ as isa_dispatch;
