//! `uvs-loop --flood N`: a spoofed SYN flood beside the established flows,
//! through the daemon's worker, in lockstep (bench/SYNFLOOD.md).
//!
//! Why in the one-process loop: over net_memif (uvs-pktgen's flood mode) a
//! flood at the generator's full rate mostly measures which process got
//! the CPU, since a full ring refuses established packets as readily as
//! spoofed SYNs. Here nothing is refused by a ring: the generator only
//! builds what the port's receive ring has room for (one burst per turn,
//! after room for the sink's handshake answers), so every packet offered
//! reaches the worker, and what is lost is lost by the director itself:
//! its connection table, its defences. The rate is whatever the one thread
//! manages (generator, worker and sink in turn): the director's full rate.
//!
//! The traffic and the sink's decisions are uvs-pktgen's
//! ([`uvs_pktgen::flood`]): after each real client's packet `--flood`
//! spoofed SYNs from `--flood-clients` (during the windows only), and with
//! `--handshake` the sink plays the real servers' SYN-ACK and the clients'
//! ACK, so the established flows (and new clients, `--mode mixed`) open
//! through the SYN proxy as real ones would. The director routes the
//! clients' and the spoofed sources' prefixes to the generator, so cookies
//! and SYN-ACKs come back to the sink and are counted.

use serde_json::{json, Value};

use dataplane::dpdk::BURST_SIZE;
use dataplane::lb::LbCounters;
use uvs_pktgen::flood::{answer_mbuf, Class, FloodMix, FloodSink, FloodSource, SinkCounts};
use uvs_pktgen::flood::{Verdict, CLASSES};

use super::*;

/// Ring slots kept free for the sink's answers: a turn's answers are at
/// most what the worker sent out, which is at most the burst it took.
const ANSWER_ROOM: usize = 2 * BURST_SIZE;

/// The flood mode's state across rounds.
pub(crate) struct Flood {
    pub(crate) mix: FloodMix,
    pub(crate) source: FloodSource,
    pub(crate) sink: FloodSink,
    /// The worker's load-balancer counters.
    pub(crate) lb: Arc<LbCounters>,
    /// The worker's connection-table capacity.
    pub(crate) capacity: u32,
    /// The worker's stack counters.
    pub(crate) net: Arc<NetCounters>,
}

/// Everything counted, from the start of the run.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    /// Built and put on the receive ring, per [`Class`].
    offered: [u64; CLASSES],
    sink: SinkCounts,
    /// Handshake answers put back on the receive ring, and lost (the ring
    /// had no room: should stay 0).
    answers: u64,
    answers_lost: u64,
    /// Frames the checker refused (the proxy's resets, ...).
    invalid: u64,
}

/// The load balancer's counters this mode reports, by name.
fn lb_figures(c: &LbCounters) -> Vec<(&'static str, u64)> {
    let mut v: Vec<(&'static str, u64)> = LbDrop::ALL
        .iter()
        .map(|&r| (r.as_str(), c.drops(r)))
        .collect();
    v.push((
        "created",
        c.created.load(std::sync::atomic::Ordering::Relaxed),
    ));
    v.extend(c.synproxy.named());
    v
}

/// `after - before` per name, the zeros left out; drop reasons as
/// `lb_drop_<reason>`.
fn lb_delta(before: &[(&'static str, u64)], after: &[(&'static str, u64)]) -> Value {
    let mut m = serde_json::Map::new();
    for ((name, b), (_, a)) in before.iter().zip(after) {
        if a > b {
            let key = if name.starts_with("synproxy") || *name == "created" {
                name.to_string()
            } else {
                format!("lb_drop_{name}")
            };
            m.insert(key, json!(a - b));
        }
    }
    Value::Object(m)
}

impl Traffic {
    /// Puts `m` on queue 0's receive ring (through its pending burst);
    /// false when the ring had no room.
    fn put_back(&mut self, m: dataplane::dpdk::Mbuf) -> bool {
        match self.pending[0].push(m) {
            Ok(()) => true,
            Err(m) => {
                self.rx[0].enqueue(&mut self.pending[0]);
                self.pending[0].push(m).is_ok()
            }
        }
    }

    /// One round of the flood mode: `--warmup` seconds without the flood
    /// (and until every established flow has opened: with `--handshake`,
    /// until as many real clients' SYNs reached a server as there are
    /// flows), then `--duration` seconds with it, then the rings drained.
    /// Returns the round's JSON line.
    pub(crate) fn flood_round(
        &mut self,
        pipe: &mut Pipeline,
        sched: &mut Schedule,
        a: &Args,
        f: &mut Flood,
        c_total: &mut Value,
        round: u32,
    ) -> Value {
        let hz = self.hz as f64;
        let t0 = tsc_cycles();
        let warm_end = t0 + (a.warmup * hz) as u64;
        // The handshakes are lockstep too; if some never completes (a bug
        // worth seeing), the window starts anyway after this long.
        let give_up = warm_end + (30.0 * hz) as u64;
        let mut c = Counts::default();
        let mut start = None::<(
            u64,
            Counts,
            Vec<(&'static str, u64)>,
            usize,
            Option<uvs_pktgen::sched::Times>,
            u64,
        )>;
        let mut gen = Burst::new();
        let mut scratch = Burst::new();
        let mut tpl_len_ok = true;
        let window = (a.duration * hz) as u64;
        loop {
            let now = tsc_cycles();
            let open_enough = !f.sink.handshake || c.sink.syn_rx >= a.sched.flows;
            match &start {
                None if now >= warm_end && sched.opened() && (open_enough || now >= give_up) => {
                    start = Some((
                        now,
                        c,
                        lb_figures(&f.lb),
                        table_len(pipe),
                        uvs_pktgen::sched::this_thread(),
                        f.net.get(Counter::DropMartianSource),
                    ));
                }
                Some((s, ..)) if now - s >= window => break,
                _ => {}
            }
            let flooding = start.is_some();
            // Only what the ring has room for, one burst at most.
            let used = self.rx[0].count() as usize + self.pending[0].len();
            let room = (RING_SLOTS as usize - 1).saturating_sub(used + ANSWER_ROOM);
            let want = room.min(BURST_SIZE - self.pending[0].len());
            if want > 0 && self.pool.alloc_bulk(&mut gen, want) {
                for mut m in gen.drain() {
                    let len = self.tpl.len();
                    tpl_len_ok &= m.set_len(len);
                    m.data_mut().copy_from_slice(&self.tpl.bytes);
                    let class = if f.mix.next_is_flood(flooding) {
                        let (src, sport) = f.source.draw();
                        self.tpl
                            .patch(m.data_mut(), src, sport, uvs_pktgen::template::TCP_SYN);
                        Class::Flood
                    } else {
                        let (flow, flags) = sched.next_packet();
                        let (src, sport) = self.clients.flow(flow);
                        self.tpl.patch(m.data_mut(), src, sport, flags);
                        Class::of_flags(flags)
                    };
                    // Room was checked: the pending burst takes it.
                    if self.pending[0].push(m).is_ok() {
                        c.offered[class as usize] += 1;
                    }
                }
            }
            if !self.pending[0].is_empty() {
                self.rx[0].enqueue(&mut self.pending[0]);
            }
            pipe.poll(&mut scratch);
            self.sink_turn(f, &mut c, &mut scratch, true);
        }
        let (s, before, lb0, table0, cpu0, martians0) = start.expect("the window started");
        let end = tsc_cycles();
        let secs = (end - s) as f64 / hz;
        let cpu = uvs_pktgen::sched::this_thread()
            .zip(cpu0)
            .map(|(b, a)| b.cpu_ns.saturating_sub(a.cpu_ns) as f64 / (secs * 1e9));
        let offered_end = c.offered;
        // Drain: what is in the rings still counts (it was offered in the
        // window); answers are no longer sent.
        for _ in 0..10_000 {
            if self.rx[0].count() == 0 && self.pending[0].is_empty() && self.tx[0].count() == 0 {
                break;
            }
            if !self.pending[0].is_empty() {
                self.rx[0].enqueue(&mut self.pending[0]);
            }
            pipe.poll(&mut scratch);
            self.sink_turn(f, &mut c, &mut scratch, false);
        }
        let table = table_len(pipe);
        let lb1 = lb_figures(&f.lb);
        let offered = |k: Class| offered_end[k as usize] - before.offered[k as usize];
        let est_offered = offered(Class::Established);
        let est_fwd = c.sink.est_rx - before.sink.est_rx;
        let flood_offered = offered(Class::Flood);
        let line = json!({
            "tool": "uvs-loop", "label": a.label, "round": round, "pipeline": "uvsd",
            "mode": a.sched.mode, "flows": a.sched.flows, "new_every": a.sched.new_every,
            "flood_per_packet": a.fl.flood, "handshake": f.sink.handshake, "sysctl": a.sysctl,
            "conn_capacity": f.capacity, "window_s": secs, "cpu_share": cpu,
            "established_offered": est_offered,
            "established_forwarded": est_fwd,
            "established_forwarded_share": est_fwd as f64 / est_offered.max(1) as f64,
            "established_offered_mpps": est_offered as f64 / secs / 1e6,
            "flood_offered": flood_offered,
            "flood_offered_mpps": flood_offered as f64 / secs / 1e6,
            "total_offered_mpps": (offered_end.iter().sum::<u64>() - before.offered.iter().sum::<u64>()) as f64 / secs / 1e6,
            "flood_at_servers": c.sink.flood_fwd - before.sink.flood_fwd,
            "flood_synacks": c.sink.flood_synack - before.sink.flood_synack,
            "new_syn_offered": offered(Class::Syn),
            "new_syn_at_servers": c.sink.syn_rx - before.sink.syn_rx,
            "client_synacks": c.sink.client_synack - before.sink.client_synack,
            "syn_at_servers_before_window": before.sink.syn_rx,
            "table_entries_at_start": table0,
            "table_entries": table,
            "table_fill": table as f64 / f64::from(f.capacity),
            "handshake_answers": c.answers - before.answers,
            "handshake_answers_lost": c.answers_lost,
            "sink_invalid": c.invalid - before.invalid,
            "frame_fits_mbuf": tpl_len_ok,
            "lb": lb_delta(&lb0, &lb1),
            // Flood SYNs from the port segment's broadcast address
            // (198.19.255.255 in 198.18.0.0/15), dropped by the stack.
            "drop_martian_source": f.net.get(Counter::DropMartianSource) - martians0,
        });
        // The run's totals of the summary: the sums of the rounds'.
        for k in [
            "established_offered",
            "established_forwarded",
            "flood_offered",
            "flood_at_servers",
            "flood_synacks",
            "new_syn_offered",
            "new_syn_at_servers",
            "handshake_answers_lost",
            "sink_invalid",
        ] {
            let sum = c_total[k].as_u64().unwrap_or(0) + line[k].as_u64().unwrap_or(0);
            c_total[k] = json!(sum);
        }
        c_total["window_s"] = json!(c_total["window_s"].as_f64().unwrap_or(0.0) + secs);
        line
    }

    /// Drains the transmit ring through the sink; with `answer`, the
    /// handshake answers go back on the receive ring.
    fn sink_turn(&mut self, f: &Flood, c: &mut Counts, scratch: &mut Burst, answer: bool) {
        while self.tx[0].dequeue(scratch) > 0 {
            for m in scratch.drain() {
                match f.sink.see(m.data(), &self.checker, &mut c.sink) {
                    Verdict::Answer if answer => {
                        if let Some(m) = answer_mbuf(m, DUT_MAC) {
                            if self.put_back(m) {
                                c.answers += 1;
                            } else {
                                c.answers_lost += 1;
                            }
                        }
                    }
                    Verdict::Invalid => c.invalid += 1,
                    _ => {}
                }
            }
        }
    }
}

/// Entries in the worker's connection table.
fn table_len(pipe: &Pipeline) -> usize {
    match pipe {
        Pipeline::Uvsd(ws) => ws.iter().map(|w| w.stage().lb().conns().len()).sum(),
        Pipeline::Empty(_) => 0,
    }
}
