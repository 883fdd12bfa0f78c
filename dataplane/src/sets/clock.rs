//! The seconds clock of set timeouts.
//!
//! Why a counter and not a clock call: the packet path makes no system
//! calls, and a timeout only needs one-second resolution. The control plane
//! calls [`refresh`] before every set command and from its housekeeping
//! tick (every 2 s); workers read [`now`] with one relaxed load.
//! Second 0 is the first refresh of the process, so expiry times fit u32.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

static EPOCH: OnceLock<Instant> = OnceLock::new();
/// Starts at 1 so that 0 can mean "never expires".
static NOW: AtomicU32 = AtomicU32::new(1);

/// Seconds since the epoch, as last refreshed.
pub fn now() -> u32 {
    NOW.load(Ordering::Relaxed)
}

/// Advances [`now`] to the monotonic clock; returns the new value.
pub fn refresh() -> u32 {
    let epoch = EPOCH.get_or_init(Instant::now);
    let secs = u32::try_from(epoch.elapsed().as_secs())
        .unwrap_or(u32::MAX - 1)
        .saturating_add(1);
    NOW.fetch_max(secs, Ordering::Relaxed);
    now()
}
