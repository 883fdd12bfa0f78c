//! UDP connections: one state named `UDP`, re-armed by every packet, always
//! counted as inactive (reference 4.2).
//!
//! Why a file for so little: protocols are one file each, as in the kernel,
//! so the table code never hard-codes a protocol's states or timeouts.

use crate::model::Timeouts;

/// The only UDP state's name in `ipvsadm -L -c`.
pub const NAME: &str = "UDP";

/// Timeout in seconds (`--set ... udp`, 300 by default).
pub fn timeout_secs(t: &Timeouts) -> u32 {
    t.udp
}
