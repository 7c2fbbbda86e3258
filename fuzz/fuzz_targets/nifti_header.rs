//! NIfTI-1/2 header parsing and geometry on arbitrary bytes must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = repux_volume::nifti::parse_header(data) {
        let _ = h.affine();
        let _ = h.scaling();
        let _ = h.spatial_and_channels();
    }
});
