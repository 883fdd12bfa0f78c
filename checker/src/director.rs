//! The director side: the state machine's actions as ipvsadm commands on
//! uvsd's control socket (the framing of `control::proto`, the same
//! requests uvsadm sends). This is the part of keepalived that spoke
//! netlink to the kernel's IPVS.
//!
//! A virtual server from a `virtual_server_group` is several services;
//! every action on a destination is carried out on each of them. A real
//! server without a port takes each service's port.

use std::net::SocketAddr;
use std::path::PathBuf;

use control::proto::Request;

use crate::conf::{Method, Protocol, Svc, VirtualServer};
use crate::state::{Action, Dest};

/// `IP:PORT`, IPv6 in brackets, as ipvsadm wants it; a real server of
/// port 0 (of an fwmark service) as its address alone.
fn addr(a: SocketAddr) -> String {
    match (a.port(), a) {
        (0, SocketAddr::V4(v)) => v.ip().to_string(),
        (0, SocketAddr::V6(v)) => v.ip().to_string(),
        _ => a.to_string(),
    }
}

/// How uvsadm names a service: `-t IP:PORT` (or `-u`, `--sctp-service`),
/// or `-f MARK` (with `-6` for IPv6).
fn svc_args(p: Protocol, svc: Svc) -> Vec<String> {
    match svc {
        Svc::Addr(a) => vec![proto_flag(p).into(), addr(a)],
        Svc::Mark { mark, v6 } => {
            let mut a = vec!["-f".to_string(), mark.to_string()];
            if v6 {
                a.push("-6".into());
            }
            a
        }
    }
}

fn proto_flag(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "-t",
        Protocol::Udp => "-u",
        Protocol::Sctp => "--sctp-service",
    }
}

fn method_args(m: &Method) -> Vec<String> {
    match m {
        Method::Nat => vec!["-m".into()],
        Method::Dr => vec!["-g".into()],
        Method::Tun(opts) => std::iter::once("-i".to_string())
            .chain(opts.iter().cloned())
            .collect(),
    }
}

/// `-A`/`-E` of one service with the virtual server's options.
pub fn service_argv(vs: &VirtualServer, svc: Svc, edit: bool) -> Vec<String> {
    let mut a = vec![if edit { "-E" } else { "-A" }.to_string()];
    a.extend(svc_args(vs.protocol, svc));
    a.extend(["-s".into(), vs.scheduler.clone()]);
    if let Some(p) = vs.persistence {
        a.push("-p".into());
        a.push(p.to_string());
        if let Some(g) = &vs.granularity {
            a.push("-M".into());
            a.push(g.clone());
        }
    }
    if vs.ops {
        a.push("-o".into());
    }
    if !vs.sched_flags.is_empty() {
        a.push("-b".into());
        a.push(vs.sched_flags.join(","));
    }
    a
}

/// The address, port and method of a destination for service `svc`.
fn dest_of(vs: &VirtualServer, d: Dest, svc: Svc) -> Option<(SocketAddr, Method, Vec<String>)> {
    let port_or = |p: Option<u16>| p.unwrap_or(svc.port());
    match d {
        Dest::Real(i) => {
            let r = vs.real_servers.get(i)?;
            let mut extra = Vec::new();
            if let Some(u) = r.upper {
                extra.extend(["-x".to_string(), u.to_string()]);
            }
            if let Some(l) = r.lower {
                extra.extend(["-y".to_string(), l.to_string()]);
            }
            Some((
                SocketAddr::new(r.addr, port_or(r.port)),
                r.method.clone(),
                extra,
            ))
        }
        Dest::Sorry => {
            let s = vs.sorry.as_ref()?;
            Some((
                SocketAddr::new(s.addr, port_or(s.port)),
                s.method.clone(),
                vec![],
            ))
        }
    }
}

/// The uvsadm argv of one action on one service (None for actions that
/// are not about the table).
pub fn action_argv(vs: &VirtualServer, svc: Svc, act: &Action) -> Option<Vec<String>> {
    let (verb, d, w) = match act {
        Action::Add(d, w) => ("-a", *d, Some(*w)),
        Action::Edit(d, w) => ("-e", *d, Some(*w)),
        Action::Del(d) => ("-d", *d, None),
        Action::Notify(_) | Action::Log(_) => return None,
    };
    let (rs, method, extra) = dest_of(vs, d, svc)?;
    let mut a = vec![verb.to_string()];
    a.extend(svc_args(vs.protocol, svc));
    a.extend(["-r".into(), addr(rs)]);
    if let Some(w) = w {
        a.extend(method_args(&method));
        a.push("-w".into());
        a.push(w.to_string());
        a.extend(extra);
    }
    Some(a)
}

/// uvsd's control socket.
#[derive(Debug, Clone)]
pub struct Director {
    pub socket: PathBuf,
}

impl Director {
    /// One ipvsadm command; Err carries uvsd's message.
    pub fn call(&self, argv: Vec<String>) -> Result<String, String> {
        let req = Request {
            argv,
            stdin: None,
            tool: Default::default(),
        };
        match control::client::call(&self.socket, &req) {
            Ok(r) if r.code == 0 => Ok(r.stdout),
            Ok(r) => Err(r.stderr.trim().to_string()),
            Err(e) => Err(format!(
                "cannot reach uvsd at {}: {e}",
                self.socket.display()
            )),
        }
    }

    /// Creates (or, if it exists, updates) every service of `vs`.
    pub fn ensure_services(&self, vs: &VirtualServer) -> Result<(), String> {
        for &svc in &vs.services {
            if let Err(e) = self.call(service_argv(vs, svc, false)) {
                if !e.contains("exists") {
                    return Err(format!("adding service {svc}: {e}"));
                }
                self.call(service_argv(vs, svc, true))
                    .map_err(|e| format!("updating service {svc}: {e}"))?;
            }
        }
        Ok(())
    }

    /// Carries out table actions on every service of `vs`; a failure is
    /// logged and the rest goes on (the next change or check corrects).
    pub fn apply(&self, vs: &VirtualServer, acts: &[Action]) {
        for act in acts {
            for &svc in &vs.services {
                let Some(mut argv) = action_argv(vs, svc, act) else {
                    continue;
                };
                match self.call(argv.clone()) {
                    Ok(_) => {}
                    // An add of something already there becomes an edit
                    // (a restart over a table this checker filled before).
                    Err(e) if argv[0] == "-a" && e.contains("exists") => {
                        argv[0] = "-e".into();
                        if let Err(e) = self.call(argv.clone()) {
                            crate::log(&format!("uvsadm {}: {e}", argv.join(" ")));
                        }
                    }
                    Err(e) if argv[0] == "-d" && e.contains("No such") => {}
                    Err(e) => crate::log(&format!("uvsadm {}: {e}", argv.join(" "))),
                }
            }
        }
    }

    /// Removes every service of `vs` (at shutdown, as keepalived does).
    pub fn remove_services(&self, vs: &VirtualServer) {
        for &svc in &vs.services {
            let mut argv = vec!["-D".to_string()];
            argv.extend(svc_args(vs.protocol, svc));
            if let Err(e) = self.call(argv) {
                crate::log(&format!("removing service {svc}: {e}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::parse_text;

    #[test]
    fn actions_become_ipvsadm_lines_on_every_service_of_a_group() {
        let text = "virtual_server_group g {\n 198.18.0.100 80\n 198.18.0.101 8080\n}\n\
            virtual_server group g {\n lb_algo wrr\n lb_kind DR\n protocol TCP\n persistence_timeout 60\n persistence_granularity 24\n\
            sorry_server 198.18.1.13\n real_server 198.18.1.11 {\n weight 3\n uthreshold 100\n }\n}\n";
        let vs = parse_text("t", text).unwrap().virtual_servers.remove(0);
        let lines = |act: &Action| -> Vec<String> {
            vs.services
                .iter()
                .filter_map(|&s| action_argv(&vs, s, act))
                .map(|a| a.join(" "))
                .collect()
        };
        assert_eq!(
            service_argv(&vs, vs.services[1], false).join(" "),
            "-A -t 198.18.0.101:8080 -s wrr -p 60 -M 255.255.255.0"
        );
        assert_eq!(
            lines(&Action::Add(Dest::Real(0), 3)),
            [
                "-a -t 198.18.0.100:80 -r 198.18.1.11:80 -g -w 3 -x 100",
                "-a -t 198.18.0.101:8080 -r 198.18.1.11:8080 -g -w 3 -x 100"
            ]
        );
        assert_eq!(
            lines(&Action::Del(Dest::Sorry)),
            [
                "-d -t 198.18.0.100:80 -r 198.18.1.13:80",
                "-d -t 198.18.0.101:8080 -r 198.18.1.13:8080"
            ]
        );
        let v6 = parse_text("t", "virtual_server 2001:db8::100 443 {\n lb_algo rr\n lb_kind TUN type gue port 6080\n protocol UDP\n real_server 2001:db8:1::11 443 {\n }\n}\n")
            .unwrap()
            .virtual_servers
            .remove(0);
        assert_eq!(
            action_argv(&v6, v6.services[0], &Action::Edit(Dest::Real(0), 0)).unwrap().join(" "),
            "-e -u [2001:db8::100]:443 -r [2001:db8:1::11]:443 -i --tun-type=gue --tun-port=6080 -w 0"
        );
        let sctp = parse_text("t", "virtual_server 198.18.0.100 3868 {\n lb_algo rr\n lb_kind NAT\n protocol SCTP\n real_server 198.18.1.11 3868 {\n }\n}\n")
            .unwrap()
            .virtual_servers
            .remove(0);
        assert_eq!(
            service_argv(&sctp, sctp.services[0], false).join(" "),
            "-A --sctp-service 198.18.0.100:3868 -s rr"
        );
        assert_eq!(
            action_argv(&sctp, sctp.services[0], &Action::Add(Dest::Real(0), 1))
                .unwrap()
                .join(" "),
            "-a --sctp-service 198.18.0.100:3868 -r 198.18.1.11:3868 -m -w 1"
        );
    }
}
