//! uvsd's commands on DPDK's telemetry socket, beside DPDK's own:
//!
//! * `/uvs/counters`: every worker counter summed over the workers (L2/L3
//!   counters by name, parser reasons as `malformed_<reason>`, load-balancer
//!   drops as `lb_drop_<reason>`, the connection table's fill and capacity),
//!   and the services' totals (`conns`, `inpkts`, `outpkts`, `inbytes`,
//!   `outbytes`).
//! * `/uvs/workers`: the same counters per worker, as one dict per worker;
//!   `/uvs/workers,N` gives worker N alone.
//! * `/uvs/services`: the services as `uvsadm -L -n` names them
//!   (`TCP 198.18.0.100:80`, `UDP [2001:db8::100]:53`);
//!   `/uvs/services,TCP 198.18.0.100:80` gives one service's counters and
//!   rates and its real servers' (arrays in the order of `dests`).
//!
//! They read the same [`Sample`] the metrics endpoint reads, so they never
//! touch a worker. Telemetry's limits apply (256 entries per dict, 512 per
//! array, one level of nesting): a director with more services than that
//! is listed in part; the metrics endpoint has no such limit.

use std::sync::Arc;

use control::format::ServiceListing;
use dataplane::dpdk::telemetry::{self, TelDict, TelValue};
use dataplane::dpdk::Eal;
use uvs_model::model::ServiceKey;

use crate::metrics::{Sample, Sources, WorkerSample};

/// A service as the listings name it.
pub fn service_name(key: &ServiceKey) -> String {
    match key {
        ServiceKey::Addr {
            protocol,
            addr: std::net::IpAddr::V6(a),
            port,
        } => format!("{} [{a}]:{port}", protocol.name()),
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => format!("{} {addr}:{port}", protocol.name()),
        ServiceKey::Fwmark { mark, .. } => format!("FWM {mark}"),
    }
}

/// One worker's counters, or the sum of several (names as
/// [`WorkerSample::named`] gives them).
fn worker_dict(ws: &[WorkerSample]) -> TelDict {
    let mut d: TelDict = Vec::new();
    for w in ws {
        for (i, (name, v)) in w.named().into_iter().enumerate() {
            match d.get_mut(i) {
                Some((_, TelValue::U64(t))) => *t = t.wrapping_add(v),
                _ => d.push((name, TelValue::U64(v))),
            }
        }
    }
    d
}

/// `/uvs/counters`.
pub fn counters(s: &Sample) -> TelDict {
    let mut d = worker_dict(&s.workers);
    d.push(("workers".into(), TelValue::U64(s.workers.len() as u64)));
    let mut t = uvs_model::stats::Counters::default();
    for svc in &s.listing.services {
        t.add(&svc.stats.counters);
    }
    for (n, v) in [
        ("conns", t.conns),
        ("inpkts", t.inpkts),
        ("outpkts", t.outpkts),
        ("inbytes", t.inbytes),
        ("outbytes", t.outbytes),
    ] {
        d.push((n.into(), TelValue::U64(v)));
    }
    d
}

/// `/uvs/workers[,N]`.
pub fn workers(s: &Sample, params: &str) -> Result<TelDict, String> {
    let params = params.trim();
    if params.is_empty() {
        return Ok(s
            .workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                (
                    i.to_string(),
                    TelValue::Dict(worker_dict(std::slice::from_ref(w))),
                )
            })
            .collect());
    }
    let w: usize = params
        .parse()
        .map_err(|_| format!("not a worker index: {params:?}"))?;
    let one = s.workers.get(w).ok_or_else(|| format!("no worker {w}"))?;
    Ok(worker_dict(std::slice::from_ref(one)))
}

fn service_dict(svc: &ServiceListing) -> TelDict {
    let st = &svc.stats;
    let mut d: TelDict = vec![
        (
            "service".into(),
            TelValue::Str(service_name(&svc.config.key)),
        ),
        (
            "scheduler".into(),
            TelValue::Str(svc.config.scheduler.to_string()),
        ),
    ];
    for (n, v) in [
        ("conns", st.counters.conns),
        ("inpkts", st.counters.inpkts),
        ("outpkts", st.counters.outpkts),
        ("inbytes", st.counters.inbytes),
        ("outbytes", st.counters.outbytes),
        ("cps", st.rates.cps),
        ("inpps", st.rates.inpps),
        ("outpps", st.rates.outpps),
        ("inbps", st.rates.inbps),
        ("outbps", st.rates.outbps),
    ] {
        d.push((n.into(), TelValue::U64(v)));
    }
    let dests = &svc.dests;
    let addr = |d: &control::format::DestListing| match d.config.addr {
        std::net::IpAddr::V6(a) => format!("[{a}]:{}", d.config.port),
        a => format!("{a}:{}", d.config.port),
    };
    d.push((
        "dests".into(),
        TelValue::Strs(dests.iter().map(addr).collect()),
    ));
    type DestField = (&'static str, fn(&control::format::DestListing) -> u64);
    let fields: [DestField; 8] = [
        ("dest_weight", |x| x.config.weight.max(0) as u64),
        ("dest_active_conns", |x| u64::from(x.active)),
        ("dest_inactive_conns", |x| u64::from(x.inactive)),
        ("dest_conns", |x| x.stats.counters.conns),
        ("dest_inpkts", |x| x.stats.counters.inpkts),
        ("dest_outpkts", |x| x.stats.counters.outpkts),
        ("dest_inbytes", |x| x.stats.counters.inbytes),
        ("dest_outbytes", |x| x.stats.counters.outbytes),
    ];
    for (n, f) in fields {
        d.push((n.into(), TelValue::U64s(dests.iter().map(f).collect())));
    }
    d
}

/// `/uvs/services[,SERVICE]`.
pub fn services(s: &Sample, params: &str) -> Result<TelDict, String> {
    let want = params.trim();
    let svcs = &s.listing.services;
    if want.is_empty() {
        return Ok(vec![
            ("count".into(), TelValue::U64(svcs.len() as u64)),
            (
                "services".into(),
                TelValue::Strs(svcs.iter().map(|x| service_name(&x.config.key)).collect()),
            ),
        ]);
    }
    let want = want.split_whitespace().collect::<Vec<_>>().join(" ");
    svcs.iter()
        .find(|x| service_name(&x.config.key).eq_ignore_ascii_case(&want))
        .map(service_dict)
        .ok_or_else(|| format!("no service {want:?}"))
}

/// Registers the three commands; they read `sources` until
/// [`unregister`].
pub fn register(eal: &Eal, sources: &Arc<Sources>) -> Result<(), String> {
    let s = Arc::clone(sources);
    telemetry::register(
        eal,
        "/uvs/counters",
        "Worker counters summed over the workers, and the services' totals",
        Box::new(move |_| Ok(counters(&s.sample()))),
    )
    .map_err(|e| e.to_string())?;
    let s = Arc::clone(sources);
    telemetry::register(
        eal,
        "/uvs/workers",
        "Counters of every worker. Parameters: a worker index (optional)",
        Box::new(move |p| workers(&s.sample(), p)),
    )
    .map_err(|e| e.to_string())?;
    let s = Arc::clone(sources);
    telemetry::register(
        eal,
        "/uvs/services",
        "Virtual services. Parameters: a service as listed (e.g. TCP 198.18.0.100:80)",
        Box::new(move |p| services(&s.sample(), p)),
    )
    .map_err(|e| e.to_string())?;
    Ok(())
}

/// Drops the handlers (and the sources they hold); waits for one running.
pub fn unregister() {
    telemetry::unregister_all();
}

#[cfg(test)]
mod tests {
    use super::*;
    use uvs_model::model::Protocol;

    #[test]
    fn services_are_named_as_listings_name_them() {
        let k = |a: &str, p| ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr: a.parse().unwrap(),
            port: p,
        };
        assert_eq!(service_name(&k("198.18.0.100", 80)), "TCP 198.18.0.100:80");
        assert_eq!(
            service_name(&k("2001:db8::1", 443)),
            "TCP [2001:db8::1]:443"
        );
    }

    #[test]
    fn counters_sum_the_workers_and_workers_take_an_index() {
        use dataplane::lb::LbCounters;
        use dataplane::net::{Counter, NetCounters};
        let a = NetCounters::default();
        a.add(Counter::Rx, 5);
        let b = NetCounters::default();
        b.add(Counter::Rx, 7);
        let lb = LbCounters::default();
        let s = Sample {
            workers: vec![
                WorkerSample::read(&a, &lb, 10),
                WorkerSample::read(&b, &lb, 10),
            ],
            ..Default::default()
        };
        let c = counters(&s);
        let get = |d: &TelDict, n: &str| d.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(get(&c, "rx"), Some(TelValue::U64(12)));
        assert_eq!(get(&c, "conn_table_capacity"), Some(TelValue::U64(20)));
        assert_eq!(get(&c, "workers"), Some(TelValue::U64(2)));
        assert!(c.iter().all(|(k, _)| telemetry::valid_name(k)), "{c:?}");
        let one = workers(&s, "1").unwrap();
        assert_eq!(get(&one, "rx"), Some(TelValue::U64(7)));
        assert!(workers(&s, "2").is_err());
        assert!(workers(&s, "x").is_err());
        assert_eq!(workers(&s, "").unwrap().len(), 2);
    }
}
