//! pcap files for tests that drive uvsd through a `net_pcap` port: the
//! frames it reads (`rx_pcap`) and the frames it sent (`tx_pcap`), in the
//! classic little-endian format with Ethernet link type.

use std::path::Path;

/// Writes `frames` as a pcap file uvsd's `net_pcap` port replays.
pub fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut out = vec![];
    out.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes()); // Ethernet
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(&(i as u32 + 1).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    std::fs::write(path, out).unwrap();
}

/// The frames of a pcap file (what a `net_pcap` port wrote).
pub fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(b.len() >= 24, "pcap header");
    let mut off = 24;
    let mut frames = vec![];
    while off + 16 <= b.len() {
        let caplen = u32::from_le_bytes(b[off + 8..off + 12].try_into().unwrap()) as usize;
        off += 16;
        frames.push(b[off..off + caplen].to_vec());
        off += caplen;
    }
    frames
}
