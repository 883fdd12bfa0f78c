//! The benchmark's service, as uvs-loop configures it and as
//! `scripts/memif-uvsd.sh` writes it for uvsd: VIP:port under one
//! scheduler with real servers 198.18.1.11.. (static neighbours with MAC
//! 02:00:00:00:01:xx, xx the address's last byte).
//!
//! Why here: the sink must know which real server each client may reach.
//! For sh and mh that is the scheduler's own choice, computed by running
//! the dataplane's scheduler on the same destination list (built by the
//! same `ConfigStore`, so in the same kernel order); a forwarder that sends
//! a client elsewhere (a wrong destination index, a stale list, a lost
//! connection) then fails the check.

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};

use dataplane::config::ConfigStore;
use dataplane::sched::{SchedInput, SplitMix64};
use uvs_model::model::{
    DestConfig, ForwardMethod, Protocol, ServiceConfig, ServiceKey, TunnelConfig, TunnelType,
};
use uvs_model::ops::ConfigOp;

use crate::check::{Servers, Tunnel};
use crate::flows::FlowSpace;

/// The first real server's address.
pub const FIRST_SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 11);

/// The first FULLNAT local address (`--add-laddr`) of `fullnat`
/// benchmarks: the sources real servers see, and where they answer.
pub const FULLNAT_LOCAL: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 50);
/// How many (from [`FULLNAT_LOCAL`] up): 16 x 64511 ports, room for the
/// new connections of a `--mode new` run under callgrind.
pub const FULLNAT_LOCALS: u32 = 16;

/// Whether `a` is one of the benchmark's FULLNAT local addresses.
pub fn is_fullnat_local(a: Ipv4Addr) -> bool {
    u32::from(a).wrapping_sub(u32::from(FULLNAT_LOCAL)) < FULLNAT_LOCALS
}

/// One benchmark service.
#[derive(Debug, Clone)]
pub struct BenchService {
    /// IP protocol number (6 or 17).
    pub protocol: u8,
    pub vip: SocketAddrV4,
    /// `-s` name.
    pub scheduler: String,
    /// `nat`, `dr`, `tun` or `fullnat`.
    pub method: String,
    pub tunnel: Tunnel,
    /// Real servers, 1..=200.
    pub servers: u8,
    /// `-p SECS`.
    pub persistent: Option<u32>,
}

impl BenchService {
    fn key(&self) -> ServiceKey {
        ServiceKey::Addr {
            protocol: if self.protocol == 6 {
                Protocol::Tcp
            } else {
                Protocol::Udp
            },
            addr: IpAddr::V4(*self.vip.ip()),
            port: self.vip.port(),
        }
    }

    /// The rules, applied to a fresh store.
    pub fn store(&self) -> Result<ConfigStore, String> {
        if !(1..=200).contains(&self.servers) {
            return Err("--servers must be 1..=200".into());
        }
        let key = self.key();
        let mut st = ConfigStore::new();
        let mut svc = ServiceConfig::new(key);
        svc.scheduler = self.scheduler.clone();
        svc.persistent = self.persistent;
        st.apply(&ConfigOp::AddService(svc))
            .map_err(|e| format!("{e:?}"))?;
        let method = match self.method.as_str() {
            "nat" => ForwardMethod::Masq,
            "dr" => ForwardMethod::Route,
            "tun" => ForwardMethod::Tunnel(match self.tunnel {
                Tunnel::Ipip => TunnelConfig::default(),
                Tunnel::Gre => TunnelConfig {
                    kind: TunnelType::Gre,
                    ..TunnelConfig::default()
                },
                Tunnel::Gue(port) => TunnelConfig {
                    kind: TunnelType::Gue,
                    port,
                    ..TunnelConfig::default()
                },
            }),
            "fullnat" => ForwardMethod::FullNat,
            m => return Err(format!("method must be nat, dr, tun or fullnat, not {m}")),
        };
        for s in 0..u32::from(self.servers) {
            st.apply(&ConfigOp::AddDest(
                key,
                DestConfig {
                    addr: IpAddr::V4(Ipv4Addr::from(u32::from(FIRST_SERVER) + s)),
                    port: self.vip.port(),
                    method,
                    weight: 1,
                    u_threshold: 0,
                    l_threshold: 0,
                },
            ))
            .map_err(|e| format!("{e:?}"))?;
        }
        if method == ForwardMethod::FullNat {
            for i in 0..FULLNAT_LOCALS {
                let a = Ipv4Addr::from(u32::from(FULLNAT_LOCAL) + i);
                st.apply(&ConfigOp::AddLocal(key, IpAddr::V4(a)))
                    .map_err(|e| format!("{e:?}"))?;
            }
        }
        Ok(st)
    }

    /// The real servers a request may reach, with sh or mh the one each
    /// client of `clients` must reach.
    pub fn expected_servers(&self, clients: FlowSpace) -> Result<Servers, String> {
        let servers = Servers::numbered(FIRST_SERVER, self.servers).map_err(|e| e.to_string())?;
        if !matches!(self.scheduler.as_str(), "sh" | "mh") {
            return Ok(servers);
        }
        let st = self.store()?;
        let snap = st.snapshot();
        let svc = snap.services.iter().next().ok_or("no service")?;
        let mut sched = dataplane::sched::new(&self.scheduler, svc.config.sched_flags)
            .map_err(|e| e.to_string())?;
        sched.update(&svc.dests);
        let mut rng = SplitMix64::new(1);
        servers
            .choose_with(clients, |client| {
                let mut input = SchedInput {
                    src: IpAddr::V4(client),
                    src_port: 0,
                    dst: IpAddr::V4(*self.vip.ip()),
                    protocol: self.protocol,
                    now: 0,
                    rng: &mut rng,
                };
                let i = sched.schedule(&svc.dests, &mut input)?;
                match svc.dests[i].config.addr {
                    IpAddr::V4(v4) => Some(v4),
                    IpAddr::V6(_) => None,
                }
            })
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(scheduler: &str, servers: u8) -> BenchService {
        BenchService {
            protocol: 17,
            vip: "198.18.0.100:80".parse().unwrap(),
            scheduler: scheduler.into(),
            method: "nat".into(),
            tunnel: Tunnel::Ipip,
            servers,
            persistent: None,
        }
    }

    #[test]
    fn sh_and_mh_fix_one_server_per_client_and_use_them_all() {
        let clients = FlowSpace::parse("198.18.128.0/24").unwrap();
        for s in ["sh", "mh"] {
            let e = svc(s, 4).expected_servers(clients).unwrap();
            let picked: std::collections::HashSet<_> = (0..256u32)
                .map(|i| e.chosen_for(u32::from(Ipv4Addr::new(198, 18, 128, 0)) + i))
                .collect();
            assert!(!picked.contains(&None), "{s}: a client without a server");
            assert_eq!(picked.len(), 4, "{s}: 256 clients over 4 servers");
        }
        let rr = svc("rr", 4).expected_servers(clients).unwrap();
        assert_eq!(
            rr.chosen_for(u32::from(Ipv4Addr::new(198, 18, 128, 1))),
            None
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(svc("rr", 0).store().is_err());
        assert!(svc("nope", 4).store().is_err());
        let mut s = svc("rr", 4);
        s.method = "x".into();
        assert!(s.store().is_err());
    }
}
