#![no_main]
//! Fuzzes the keepalived.conf parser and, for what it accepts, the checker
//! state machine. The body is `checker::fuzz_one`, which a property test
//! in `checker` also drives, so the target is exercised on stable
//! toolchains too.
libfuzzer_sys::fuzz_target!(|data: &[u8]| checker::fuzz_one(data));
