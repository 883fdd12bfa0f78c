#![no_main]
//! IP fragment reassembly on arbitrary frames (two-byte length prefixes).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = dataplane::frag::reassembly::fuzz_reassembly(data);
});
