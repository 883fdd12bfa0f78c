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
//! With `--workers 2` each packet goes on the receive queue of the worker
//! that owns its client (the Toeplitz hash of the client's address and
//! port, as a NIC's RSS computes it on a client-facing port, `rss =
//! "client"`), the sink's answers on the queue their request left by
//! (the owner's, as a server-facing port would); with `--handover all` on
//! the other worker's, which then hands them over. The SYN proxy's
//! cookies are per worker: a client's SYN and its ACK must reach the same
//! one, which the stage's ownership test ensures whatever queue they came
//! in on. The figures are given per worker and in total.
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
    /// Each worker's load-balancer counters.
    pub(crate) lb: Vec<Arc<LbCounters>>,
    /// A worker's connection-table capacity.
    pub(crate) capacity: u32,
    /// Each worker's stack counters.
    pub(crate) net: Vec<Arc<NetCounters>>,
}

/// Everything counted, from the start of the run.
#[derive(Debug, Default, Clone)]
struct Counts {
    /// Built and put on a receive ring, per worker owning the client, per
    /// [`Class`].
    offered: Vec<[u64; CLASSES]>,
    /// What the sink saw, per worker (the transmit queue it left by).
    sink: Vec<SinkCounts>,
    /// Handshake answers put back on a receive ring, and lost (the ring
    /// had no room: should stay 0).
    answers: u64,
    answers_lost: u64,
    /// Frames the checker refused (the proxy's resets, ...).
    invalid: u64,
}

impl Counts {
    fn new(workers: usize) -> Counts {
        Counts {
            offered: vec![[0; CLASSES]; workers],
            sink: vec![SinkCounts::default(); workers],
            ..Counts::default()
        }
    }

    fn handshakes_at_servers(&self) -> u64 {
        self.sink.iter().map(|s| s.syn_rx).sum()
    }
}

/// What the window's figures are measured from.
struct Start {
    at: u64,
    counts: Counts,
    lb: Vec<Vec<(&'static str, u64)>>,
    table: Vec<usize>,
    cpu: Option<uvs_pktgen::sched::Times>,
    net: Vec<Vec<(String, u64)>>,
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
    v.extend(c.defense.named());
    v
}

/// [`lb_figures`] of every worker, summed.
pub(crate) fn lb_figures_sum(lbs: &[Arc<LbCounters>]) -> Vec<(&'static str, u64)> {
    let mut sum = lb_figures(&lbs[0]);
    for c in &lbs[1..] {
        for (s, (_, v)) in sum.iter_mut().zip(lb_figures(c)) {
            s.1 += v;
        }
    }
    sum
}

/// `after - before` per name, the zeros left out; drop reasons as
/// `lb_drop_<reason>`.
fn lb_delta(before: &[(&'static str, u64)], after: &[(&'static str, u64)]) -> Value {
    let mut m = serde_json::Map::new();
    for ((name, b), (_, a)) in before.iter().zip(after) {
        if a > b {
            let key = if name.starts_with("synproxy")
                || name.starts_with("defense_dropped")
                || *name == "created"
            {
                name.to_string()
            } else {
                format!("lb_drop_{name}")
            };
            m.insert(key, json!(a - b));
        }
    }
    Value::Object(m)
}

/// The stack's counters that moved between `before` and `after`.
fn net_delta(before: &[(String, u64)], after: &[(String, u64)]) -> Value {
    let mut m = serde_json::Map::new();
    for (name, a) in after {
        let b = before
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, b)| *b);
        if *a > b {
            m.insert(name.clone(), json!(a - b));
        }
    }
    Value::Object(m)
}

/// Adds `v`'s numbers into `sum`'s, name by name.
fn add_into(sum: &mut serde_json::Map<String, Value>, v: &Value) {
    for (k, n) in v.as_object().into_iter().flatten() {
        let s = sum.get(k).and_then(Value::as_u64).unwrap_or(0) + n.as_u64().unwrap_or(0);
        sum.insert(k.clone(), json!(s));
    }
}

impl Traffic {
    /// Puts `m` on queue `q`'s receive ring (through its pending burst);
    /// false when the ring had no room.
    fn put_back(&mut self, q: usize, m: dataplane::dpdk::Mbuf) -> bool {
        match self.pending[q].push(m) {
            Ok(()) => true,
            Err(m) => {
                self.rx[q].enqueue(&mut self.pending[q]);
                self.pending[q].push(m).is_ok()
            }
        }
    }

    /// The worker owning client `src:sport` and the queue its packets
    /// come in on (the owner's; the other one with `--handover all`).
    #[inline]
    fn queue_of(&self, src: u32, sport: u16) -> (usize, usize) {
        let n = self.rx.len();
        if n == 1 {
            return (0, 0);
        }
        let w = self.owners.owner(IpAddr::V4(Ipv4Addr::from(src)), sport);
        (w, if self.all_handover { (w + 1) % n } else { w })
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
        let nq = self.rx.len();
        let hz = self.hz as f64;
        let t0 = tsc_cycles();
        let warm_end = t0 + (a.warmup * hz) as u64;
        // The handshakes are lockstep too; if some never completes (a bug
        // worth seeing), the window starts anyway after this long.
        let give_up = warm_end + (30.0 * hz) as u64;
        let mut c = Counts::new(nq);
        let mut start = None::<Start>;
        let mut gen = Burst::new();
        let mut scratch = Burst::new();
        let mut tpl_len_ok = true;
        let window = (a.duration * hz) as u64;
        let lb_now = |f: &Flood| f.lb.iter().map(|l| lb_figures(l)).collect::<Vec<_>>();
        let net_now = |f: &Flood| f.net.iter().map(|n| n.nonzero()).collect::<Vec<_>>();
        loop {
            let now = tsc_cycles();
            let open_enough = !f.sink.handshake || c.handshakes_at_servers() >= a.sched.flows;
            match &start {
                None if now >= warm_end && sched.opened() && (open_enough || now >= give_up) => {
                    start = Some(Start {
                        at: now,
                        counts: c.clone(),
                        lb: lb_now(f),
                        table: table_lens(pipe),
                        cpu: uvs_pktgen::sched::this_thread(),
                        net: net_now(f),
                    });
                }
                Some(s) if now - s.at >= window => break,
                _ => {}
            }
            let flooding = start.is_some();
            // Only what every ring has room for (a packet may go to any),
            // one burst at most.
            let mut want = BURST_SIZE;
            for q in 0..nq {
                let used = self.rx[q].count() as usize + self.pending[q].len();
                let room = (RING_SLOTS as usize - 1).saturating_sub(used + ANSWER_ROOM);
                want = want.min(room).min(BURST_SIZE - self.pending[q].len());
            }
            if want > 0 && self.pool.alloc_bulk(&mut gen, want) {
                for mut m in gen.drain() {
                    let len = self.tpl.len();
                    tpl_len_ok &= m.set_len(len);
                    m.data_mut().copy_from_slice(&self.tpl.bytes);
                    let (class, src, sport) = if f.mix.next_is_flood(flooding) {
                        let (src, sport) = f.source.draw();
                        self.tpl
                            .patch(m.data_mut(), src, sport, uvs_pktgen::template::TCP_SYN);
                        (Class::Flood, src, sport)
                    } else {
                        let (flow, flags) = sched.next_packet();
                        let (src, sport) = self.clients.flow(flow);
                        self.tpl.patch(m.data_mut(), src, sport, flags);
                        (Class::of_flags(flags), src, sport)
                    };
                    let (owner, q) = self.queue_of(src, sport);
                    // Room was checked: the pending burst takes it.
                    if self.pending[q].push(m).is_ok() {
                        c.offered[owner][class as usize] += 1;
                    }
                }
            }
            for q in 0..nq {
                if !self.pending[q].is_empty() {
                    self.rx[q].enqueue(&mut self.pending[q]);
                }
            }
            pipe.poll(&mut scratch);
            self.sink_turn(f, &mut c, &mut scratch, true);
        }
        let s = start.expect("the window started");
        let end = tsc_cycles();
        let secs = (end - s.at) as f64 / hz;
        let cpu = uvs_pktgen::sched::this_thread()
            .zip(s.cpu)
            .map(|(b, a)| b.cpu_ns.saturating_sub(a.cpu_ns) as f64 / (secs * 1e9));
        let offered_end = c.offered.clone();
        // Drain: what is in the rings still counts (it was offered in the
        // window); answers are no longer sent.
        for _ in 0..10_000 {
            // Handed over and not yet taken in by the other worker.
            let in_mesh = |f: &Flood| {
                let n = |k: Counter| f.net.iter().map(|n| n.get(k)).sum::<u64>();
                n(Counter::HandedOver) > n(Counter::HandedIn) + n(Counter::DropHandOverFull)
            };
            let busy = in_mesh(f)
                || (0..nq).any(|q| {
                    self.rx[q].count() > 0 || !self.pending[q].is_empty() || self.tx[q].count() > 0
                });
            if !busy {
                break;
            }
            for q in 0..nq {
                if !self.pending[q].is_empty() {
                    self.rx[q].enqueue(&mut self.pending[q]);
                }
            }
            pipe.poll(&mut scratch);
            self.sink_turn(f, &mut c, &mut scratch, false);
        }
        let tables = table_lens(pipe);
        let lb1 = lb_now(f);
        let net1 = net_now(f);
        let before = &s.counts;
        // One worker's figures (`w`), or the sum of all (`None`).
        let figures = |w: Option<usize>| {
            let ws: Vec<usize> = w.map_or_else(|| (0..nq).collect(), |w| vec![w]);
            let offered = |k: Class| -> u64 {
                ws.iter()
                    .map(|&w| offered_end[w][k as usize] - before.offered[w][k as usize])
                    .sum()
            };
            let sink = |g: fn(&SinkCounts) -> u64| -> u64 {
                ws.iter().map(|&w| g(&c.sink[w]) - g(&before.sink[w])).sum()
            };
            let est_offered = offered(Class::Established);
            let est_fwd = sink(|s| s.est_rx);
            let est_reset = sink(|s| s.est_reset);
            let table: usize = ws.iter().map(|&w| tables[w]).sum();
            let mut lb = serde_json::Map::new();
            let mut net = serde_json::Map::new();
            for &w in &ws {
                add_into(&mut lb, &lb_delta(&s.lb[w], &lb1[w]));
                add_into(&mut net, &net_delta(&s.net[w], &net1[w]));
            }
            json!({
                "established_offered": est_offered,
                "established_forwarded": est_fwd,
                "established_forwarded_share": est_fwd as f64 / est_offered.max(1) as f64,
                // Answered by the director's stack with a reset (no
                // connection: `drop_entry` removed it, ...); the rest is
                // in no counter.
                "established_reset": est_reset,
                "established_unaccounted": est_offered as i64 - est_fwd as i64 - est_reset as i64,
                "client_resets_other": sink(|s| s.other_reset),
                "flood_offered": offered(Class::Flood),
                "flood_at_servers": sink(|s| s.flood_fwd),
                "flood_synacks": sink(|s| s.flood_synack),
                "new_syn_offered": offered(Class::Syn),
                "new_syn_at_servers": sink(|s| s.syn_rx),
                "client_synacks": sink(|s| s.client_synack),
                "syn_at_servers_before_window": ws.iter().map(|&w| before.sink[w].syn_rx).sum::<u64>(),
                "table_entries_at_start": ws.iter().map(|&w| s.table[w]).sum::<usize>(),
                "table_entries": table,
                "table_fill": table as f64 / (f64::from(f.capacity) * ws.len() as f64),
                "lb": Value::Object(lb),
                "net": Value::Object(net),
            })
        };
        let mut line = json!({
            "tool": "uvs-loop", "label": a.label, "round": round, "pipeline": "uvsd",
            "mode": a.sched.mode, "flows": a.sched.flows, "new_every": a.sched.new_every,
            "flood_per_packet": a.fl.flood, "handshake": f.sink.handshake, "sysctl": a.sysctl,
            "workers": nq, "handover": a.handover,
            "conn_capacity": f.capacity, "window_s": secs, "cpu_share": cpu,
            "handshake_answers": c.answers - before.answers,
            "handshake_answers_lost": c.answers_lost,
            "sink_invalid": c.invalid - before.invalid,
            "frame_fits_mbuf": tpl_len_ok,
        });
        let all = figures(None);
        for (k, v) in all.as_object().into_iter().flatten() {
            line[k] = v.clone();
        }
        let secs_ = secs.max(1e-9);
        line["established_offered_mpps"] =
            json!(all["established_offered"].as_u64().unwrap_or(0) as f64 / secs_ / 1e6);
        line["flood_offered_mpps"] =
            json!(all["flood_offered"].as_u64().unwrap_or(0) as f64 / secs_ / 1e6);
        let offered_all: u64 = (0..nq)
            .map(|w| offered_end[w].iter().sum::<u64>() - before.offered[w].iter().sum::<u64>())
            .sum();
        line["total_offered_mpps"] = json!(offered_all as f64 / secs_ / 1e6);
        // Flood SYNs from the port segment's broadcast address
        // (198.19.255.255 in 198.18.0.0/15), dropped by the stack.
        line["drop_martian_source"] = all["net"]["drop_martian_source"].clone();
        if nq > 1 {
            line["per_worker"] = Value::Array((0..nq).map(|w| figures(Some(w))).collect());
        }
        // The run's totals of the summary: the sums of the rounds'.
        for k in [
            "established_offered",
            "established_forwarded",
            "established_reset",
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

    /// Drains the transmit rings through the sink; with `answer`, the
    /// handshake answers go back on the receive ring their request left
    /// by (the other one with `--handover all`).
    fn sink_turn(&mut self, f: &Flood, c: &mut Counts, scratch: &mut Burst, answer: bool) {
        let nq = self.tx.len();
        for q in 0..nq {
            let back = if self.all_handover { (q + 1) % nq } else { q };
            while self.tx[q].dequeue(scratch) > 0 {
                for m in scratch.drain() {
                    match f.sink.see(m.data(), &self.checker, &mut c.sink[q]) {
                        Verdict::Answer if answer => {
                            if let Some(m) = answer_mbuf(m, DUT_MAC) {
                                if self.put_back(back, m) {
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
}

/// Entries in each worker's connection table.
fn table_lens(pipe: &Pipeline) -> Vec<usize> {
    match pipe {
        Pipeline::Uvsd(ws) => ws.iter().map(|w| w.stage().lb().conns().len()).collect(),
        Pipeline::Empty(_) => vec![],
    }
}
