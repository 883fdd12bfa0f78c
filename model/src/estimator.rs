//! The IPVS rate estimator: connections, packets and bytes per second, as
//! `ipvsadm -L --rate` shows them.
//!
//! Why a copy of the kernel's arithmetic rather than a plain "delta / 2 s":
//! operators compare UVS's numbers with what a kernel director showed, and
//! the kernel smooths with a fixed-point moving average whose rounding is
//! visible in small rates. Every 2 seconds, for each counter:
//!
//! * `rate = delta << 9` for connections and packets (per second, scaled by
//!   2^10: `<< 10` for the scale, `>> 1` for the 2 s interval), `delta << 4`
//!   for bytes (per second scaled by 2^5);
//! * `avg += (rate - avg) >> 2` with a signed (arithmetic) shift, a weight of
//!   1/4 per tick, roughly an 8-second window;
//! * reported `(avg + 0x1FF) >> 10` for cps/pps and `(avg + 0xF) >> 5` for
//!   bytes per second.
//!
//! The estimator has no clock of its own: the control thread calls
//! [`Estimator::tick`] every 2 seconds with the current counter totals, so
//! tests drive it deterministically. `-Z` calls [`Estimator::reset`], which
//! zeroes the averages and takes the current totals as the new base.

use serde::{Deserialize, Serialize};

use crate::stats::Counters;

/// Seconds between two [`Estimator::tick`] calls (the kernel's `2 * HZ`).
pub const TICK_SECONDS: u64 = 2;

/// Rates as listed by `--rate`: per second, already unscaled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rates {
    /// Connections per second.
    pub cps: u64,
    /// Client-to-server packets per second.
    pub inpps: u64,
    /// Server-to-client packets per second.
    pub outpps: u64,
    /// Client-to-server bytes per second.
    pub inbps: u64,
    /// Server-to-client bytes per second.
    pub outbps: u64,
}

/// The smoothed state of one service's or destination's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Estimator {
    last: Counters,
    /// Scaled averages: conns/pkts by 2^10, bytes by 2^5.
    cps: i64,
    inpps: i64,
    outpps: i64,
    inbps: i64,
    outbps: i64,
}

/// One step of the moving average: `avg += (rate - avg) >> 2`, signed.
fn smooth(avg: i64, rate: i64) -> i64 {
    avg.wrapping_add(rate.wrapping_sub(avg) >> 2)
}

/// `delta << shift` as the kernel computes it on 64-bit counters.
fn scaled(now: u64, last: u64, shift: u32) -> i64 {
    (now.wrapping_sub(last) << shift) as i64
}

fn report(avg: i64, round: i64, shift: u32) -> u64 {
    // The average never goes negative (it moves a quarter of the way
    // towards a non-negative rate, rounding down); clamp for safety.
    (avg.wrapping_add(round) >> shift).max(0) as u64
}

impl Estimator {
    /// An estimator whose first interval starts at `base`.
    pub fn new(base: Counters) -> Estimator {
        Estimator {
            last: base,
            ..Estimator::default()
        }
    }

    /// One 2-second step with the counters' current totals.
    pub fn tick(&mut self, now: Counters) {
        let l = self.last;
        self.cps = smooth(self.cps, scaled(now.conns, l.conns, 9));
        self.inpps = smooth(self.inpps, scaled(now.inpkts, l.inpkts, 9));
        self.outpps = smooth(self.outpps, scaled(now.outpkts, l.outpkts, 9));
        self.inbps = smooth(self.inbps, scaled(now.inbytes, l.inbytes, 4));
        self.outbps = smooth(self.outbps, scaled(now.outbytes, l.outbytes, 4));
        self.last = now;
    }

    /// `-Z`: averages back to 0, `now` is the new base.
    pub fn reset(&mut self, now: Counters) {
        *self = Estimator::new(now);
    }

    /// The rates as `--rate` lists them.
    pub fn rates(&self) -> Rates {
        Rates {
            cps: report(self.cps, 0x1FF, 10),
            inpps: report(self.inpps, 0x1FF, 10),
            outpps: report(self.outpps, 0x1FF, 10),
            inbps: report(self.inbps, 0xF, 5),
            outbps: report(self.outbps, 0xF, 5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(conns: u64, pkts: u64, bytes: u64) -> Counters {
        Counters {
            conns,
            inpkts: pkts,
            outpkts: pkts / 2,
            inbytes: bytes,
            outbytes: bytes / 2,
        }
    }

    #[test]
    fn first_tick_reports_a_quarter_of_the_rate() {
        // 200 conns in 2 s = 100/s. rate = 200<<9 = 102400; avg = 102400>>2
        // = 25600; reported (25600+511)>>10 = 25.
        // 20000 bytes in 2 s: rate = 20000<<4 = 320000; avg = 80000;
        // reported (80000+15)>>5 = 2500.
        let mut e = Estimator::new(Counters::default());
        e.tick(c(200, 2000, 20000));
        let r = e.rates();
        assert_eq!(r.cps, 25);
        // 2000 pkts: rate 1024000, avg 256000, (256000+511)>>10 = 250.
        assert_eq!(r.inpps, 250);
        // 1000 pkts: rate 512000, avg 128000, (128000+511)>>10 = 125.
        assert_eq!(r.outpps, 125);
        assert_eq!(r.inbps, 2500);
        // 10000 bytes: rate 160000, avg 40000, (40000+15)>>5 = 1250.
        assert_eq!(r.outbps, 1250);
    }

    #[test]
    fn steady_rate_converges_with_kernel_rounding() {
        // 1 conn per tick (0.5/s): rate = 512 each tick.
        // avg: 128, 224, 296, 350 (=296+54), 390 (=350+40)
        // reported (avg+511)>>10: 0, 0, 0, 0, 0 -> then it reaches 1 only
        // once avg >= 513, which never happens (limit 512): rounding shows.
        let mut e = Estimator::new(Counters::default());
        let mut expect = [128i64, 224, 296, 350, 390].into_iter();
        for t in 1..=5u64 {
            e.tick(c(t, 0, 0));
            assert_eq!(e.cps, expect.next().unwrap_or_default());
            assert_eq!(e.rates().cps, 0);
        }
        // 3 conns per tick (1.5/s): rate 1536; from avg 390:
        // 390 + (1146>>2 = 286) = 676 -> (676+511)>>10 = 1.
        e.tick(c(8, 0, 0));
        assert_eq!(e.cps, 676);
        assert_eq!(e.rates().cps, 1);
    }

    #[test]
    fn falling_rate_uses_arithmetic_shift() {
        // avg after one tick of 4 conns: rate 2048, avg 512.
        // Next tick no traffic: 512 + ((0-512)>>2 = -128) = 384.
        // Then 384 - 96 = 288; then 288 - 72 = 216.
        // With a value that is not a multiple of 4: 216 - 54 = 162,
        // 162 + (-162>>2 = -41) = 121 (floor, not truncation toward 0).
        let mut e = Estimator::new(Counters::default());
        e.tick(c(4, 0, 0));
        assert_eq!(e.cps, 512);
        for want in [384, 288, 216, 162, 121] {
            e.tick(c(4, 0, 0));
            assert_eq!(e.cps, want);
        }
    }

    #[test]
    fn reset_zeroes_averages_and_rebases() {
        let mut e = Estimator::new(Counters::default());
        e.tick(c(200, 2000, 20000));
        e.reset(c(200, 2000, 20000));
        assert_eq!(e.rates(), Rates::default());
        // No traffic since the reset: still zero (the old totals are the base).
        e.tick(c(200, 2000, 20000));
        assert_eq!(e.rates(), Rates::default());
    }
}
