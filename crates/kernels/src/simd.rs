//! Run-time ISA dispatch for the hand-written element-wise loops (Winograd transforms, fused
//! norm passes): the same Rust body compiled three times, for AVX-512, AVX2 and baseline.

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

pub(crate) fn isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl") && is_x86_feature_detected!("avx2") {
            return Isa::Avx512;
        }
        if is_x86_feature_detected!("avx2") {
            return Isa::Avx2;
        }
    }
    Isa::Base
}

/// Defines `$name` calling `$imp` compiled for the ISA picked at run time (the body is inlined
/// into a `#[target_feature]` copy per ISA, so the compiler vectorises it for that width).
macro_rules! isa_dispatch_ {
    ($vis:vis $name:ident => $imp:ident ($($arg:ident: $ty:ty),*)) => {
        #[allow(clippy::too_many_arguments)]
        $vis fn $name(isa: $crate::simd::Isa, $($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v4($($arg: $ty),*) {
                    $imp($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
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
