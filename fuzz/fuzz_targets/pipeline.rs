#![no_main]
//! The whole classify, lookup, schedule, rewrite path on arbitrary bytes.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = dataplane::lb::fuzz_pipeline(data);
});
