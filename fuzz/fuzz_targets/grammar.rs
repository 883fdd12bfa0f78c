#![no_main]
//! Fuzzes the ipvsadm grammar: command lines and `-R` input. The body is
//! `control::grammar::fuzz_one`, which a property test in `control` also
//! drives, so the target is exercised on stable toolchains too.
libfuzzer_sys::fuzz_target!(|data: &[u8]| control::grammar::fuzz_one(data));
