#![no_main]
//! Fuzzes the control socket: arbitrary bytes read as request frames, each
//! request run by a director, and as response frames. The body is
//! `control::fuzz::fuzz_control`, which a property test in `control` also
//! drives, so the target is exercised on stable toolchains too.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = control::fuzz::fuzz_control(data);
});
