//! NRRD header parsing on arbitrary bytes must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = repux_volume::nrrd::parse_header(data);
});
