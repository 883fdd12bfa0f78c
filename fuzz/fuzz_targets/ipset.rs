#![no_main]
//! Fuzzes the ipset grammar (uvsset): command lines and `restore` input
//! against a store with one set of each kind. The body is
//! `control::ipset::fuzz_one`, which a property test in `control` also
//! drives, so the target is exercised on stable toolchains too.
libfuzzer_sys::fuzz_target!(|data: &[u8]| control::ipset::fuzz_one(data));
