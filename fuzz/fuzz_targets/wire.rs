//! Fuzzes the classifier and every checked packet view: no input may panic.
//! The body lives in `dataplane::wire::fuzz_views` so the dataplane's own
//! property tests run the same code on stable Rust.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = dataplane::wire::fuzz_views(data);
});
