#![no_main]
//! Fuzzes the iptables grammar: command lines, iptables-save options and
//! iptables-restore input. The body is `control::iptables::fuzz_one`,
//! which a property test in `control` also drives, so the target is
//! exercised on stable toolchains too.
libfuzzer_sys::fuzz_target!(|data: &[u8]| control::iptables::fuzz_one(data));
