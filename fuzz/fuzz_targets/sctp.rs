#![no_main]
//! SCTP packets (any chunks, lengths, CRC32c right or wrong) of one
//! association through the parser, the IPVS state tables and the NAT
//! rewrite. The body is `dataplane::conn::sctp_fuzz::fuzz_sctp`, which the
//! dataplane's property tests also drive.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = dataplane::conn::sctp_fuzz::fuzz_sctp(data);
});
