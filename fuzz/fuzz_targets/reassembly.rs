#![no_main]
//! IP fragment reassembly: fragments whose offsets, lengths, MF bits,
//! identifications, headers and arrival times the bytes decide (and raw
//! frames), through one worker's reassembler, with its invariants checked
//! after every fragment. The body is `dataplane::frag::reassembly::
//! fuzz_reassembly`, which the dataplane's property tests also drive.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = dataplane::frag::reassembly::fuzz_reassembly(data);
});
