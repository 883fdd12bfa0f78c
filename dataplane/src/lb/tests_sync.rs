//! Synchronisation through two load-balancing stages: what the master's
//! worker queues after real packets, and what the backup installs from the
//! message the sync thread would build.

use std::net::IpAddr;

use super::super::{Action, Egress, Lb, LbSettings};
use crate::buf::{PacketBuf, TestBuf};
use crate::config::{ConfigOp, ConfigStore};
use crate::model::{DestConfig, ForwardMethod, Protocol, ServiceConfig, ServiceKey};
use crate::sync::daemon::receive;
use crate::sync::{from_record, SyncDrop, SyncHub};
use crate::wire::sync::{flags, MessageBuilder, SyncConn};
use crate::wire::testutil::{frame, L4};
use crate::wire::{checksum, parse_packet, tcp};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

struct Routes;
impl Egress for Routes {
    fn route(&self, _dst: IpAddr) -> Option<(IpAddr, u16)> {
        Some((ip("198.18.1.1"), 1500))
    }
}

fn nat_store() -> ConfigStore {
    let key = ServiceKey::Addr {
        protocol: Protocol::Tcp,
        addr: ip("198.18.0.100"),
        port: 80,
    };
    let mut st = ConfigStore::new();
    st.apply(&ConfigOp::AddService(ServiceConfig::new(key)))
        .unwrap();
    for a in ["198.18.1.11", "198.18.1.12"] {
        let d = DestConfig {
            addr: ip(a),
            port: 8080,
            method: ForwardMethod::Masq,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
        };
        st.apply(&ConfigOp::AddDest(key, d)).unwrap();
    }
    st
}

fn lb_with_hub(st: &ConfigStore) -> (Lb, std::sync::Arc<SyncHub>) {
    let mut lb = Lb::new(
        0,
        LbSettings {
            capacity: 1024,
            ..LbSettings::default()
        },
        0,
    );
    lb.set_snapshot(st.snapshot());
    let (hub, mut ends) = SyncHub::new(1);
    lb.set_sync(ends.remove(0));
    (lb, hub)
}

fn tcp_frame(src: &str, sport: u16, dst: &str, dport: u16, fl: u8) -> Vec<u8> {
    let mut f = frame(ip(src), ip(dst), L4::Tcp, sport, dport, None, b"");
    let m = parse_packet(&f).unwrap();
    let off = usize::from(m.l4_offset);
    let old = u16::from_be_bytes([f[off + 12], f[off + 13]]);
    f[off + 13] = fl;
    let new = u16::from_be_bytes([f[off + 12], f[off + 13]]);
    let mut t = tcp::TcpPacket::new_checked(&mut f[off..]).unwrap();
    let c = checksum::update16(t.checksum(), old, new);
    t.set_checksum(c);
    f
}

fn run(lb: &mut Lb, f: &[u8], now: u64) -> Action {
    let mut b = TestBuf::new(f);
    let m = parse_packet(b.data()).unwrap();
    lb.process(&mut b, &m, now, &Routes)
}

/// Opens a NAT connection from 198.18.0.2:40000 and sends `data` more
/// client packets; returns the real server chosen.
fn open(lb: &mut Lb, data: usize) -> IpAddr {
    let Action::Forward(rs) = run(
        lb,
        &tcp_frame("198.18.0.2", 40000, "198.18.0.100", 80, 0x02),
        0,
    ) else {
        panic!("not scheduled")
    };
    let rs_s = rs.to_string();
    run(lb, &tcp_frame(&rs_s, 8080, "198.18.0.2", 40000, 0x12), 1);
    for i in 0..=data {
        run(
            lb,
            &tcp_frame("198.18.0.2", 40000, "198.18.0.100", 80, 0x10),
            2 + i as u64,
        );
    }
    rs
}

fn queued(hub: &SyncHub) -> Vec<SyncConn> {
    let rings = hub.from_workers.lock().unwrap();
    std::iter::from_fn(|| rings[0].pop())
        .filter_map(|r| from_record(&r))
        .collect()
}

#[test]
fn the_master_queues_an_established_connection_at_its_third_client_packet() {
    let st = nat_store();
    let (mut lb, hub) = lb_with_hub(&st);
    // No master running: nothing is queued.
    open(&mut lb, 5);
    assert!(queued(&hub).is_empty());

    let (mut lb, hub) = lb_with_hub(&st);
    hub.set_master(true);
    lb.sync_tick(0);
    // SYN (1), ACK (2): established, not yet due.
    let rs = open(&mut lb, 0);
    assert!(queued(&hub).is_empty());
    // Third client packet.
    run(
        &mut lb,
        &tcp_frame("198.18.0.2", 40000, "198.18.0.100", 80, 0x10),
        9,
    );
    let got = queued(&hub);
    assert_eq!(
        got,
        vec![SyncConn {
            protocol: 6,
            flags: flags::MASQ,
            state: 1,
            cport: 40000,
            vport: 80,
            dport: 8080,
            fwmark: 0,
            timeout: 900,
            caddr: ip("198.18.0.2"),
            vaddr: ip("198.18.0.100"),
            daddr: rs,
            seq: None,
        }]
    );
    // The client's FIN (ESTABLISHED -> CLOSE_WAIT) is sent at once.
    run(
        &mut lb,
        &tcp_frame("198.18.0.2", 40000, "198.18.0.100", 80, 0x11),
        10,
    );
    let got = queued(&hub);
    assert_eq!((got.len(), got[0].state, got[0].timeout), (1, 7, 60));
}

#[test]
fn the_backup_installs_what_its_syncid_accepts_and_counts_the_rest() {
    let st = nat_store();
    let (mut master, mhub) = lb_with_hub(&st);
    mhub.set_master(true);
    master.sync_tick(0);
    let rs = open(&mut master, 1);
    let sent = queued(&mhub);
    assert_eq!(sent.len(), 1);

    // The backup has its own configuration (and destinations' counters).
    let bst = nat_store();
    let (mut backup, bhub) = lb_with_hub(&bst);
    let mut buf = [0u8; 1472];
    let mut m = MessageBuilder::new(&mut buf, 7).unwrap();
    m.push(&sent[0]).unwrap();
    let msg = m.bytes().to_vec();

    // Another SyncID, and bytes from a stranger: counted, not installed.
    receive(&bhub, 5, &msg);
    receive(&bhub, 7, b"hello, backup");
    let mut garbled = msg.clone();
    garbled[8] = 0x80;
    receive(&bhub, 7, &garbled);
    backup.sync_tick(100);
    assert_eq!(backup.connections(100).count(), 0);
    let c = &bhub.counters;
    assert_eq!(
        (
            c.drops(SyncDrop::WrongSyncid),
            c.drops(SyncDrop::BadSize),
            c.drops(SyncDrop::BadEntry)
        ),
        (1, 1, 1)
    );

    // The right SyncID: installed with the master's state and timeout.
    receive(&bhub, 7, &msg);
    backup.sync_tick(100);
    let rows: Vec<_> = backup.connections(100).collect();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(
        (
            r.state.as_str(),
            r.expires,
            r.daddr,
            r.dport,
            r.client,
            r.cport
        ),
        ("ESTABLISHED", 900, rs, 8080, ip("198.18.0.2"), 40000)
    );
    let d = bst.snapshot().services[0]
        .dests
        .iter()
        .find(|d| d.config.addr == rs)
        .map(|d| {
            d.shared
                .activeconns
                .load(std::sync::atomic::Ordering::Relaxed)
        });
    assert_eq!(d, Some(1), "counted active on the backup's destination");
    let id = backup.conns().ids().next().unwrap();
    assert!(backup.conns().is_synced(id));

    // After a failover the client's next packet follows the connection.
    let Action::Forward(to) = run(
        &mut backup,
        &tcp_frame("198.18.0.2", 40000, "198.18.0.100", 80, 0x10),
        200,
    ) else {
        panic!("not forwarded")
    };
    assert_eq!(to, rs);
}

#[test]
fn entries_without_a_local_service_are_counted() {
    let (mut backup, bhub) = lb_with_hub(&nat_store());
    let mut c = SyncConn {
        protocol: 6,
        flags: flags::MASQ,
        state: 1,
        cport: 1,
        vport: 81,
        dport: 8080,
        fwmark: 0,
        timeout: 900,
        caddr: ip("198.18.0.2"),
        vaddr: ip("198.18.0.100"),
        daddr: ip("198.18.1.11"),
        seq: None,
    };
    assert_eq!(backup.install_synced(&c, 0), Err(SyncDrop::NoService));
    c.vport = 80;
    c.daddr = ip("198.18.1.99");
    assert_eq!(backup.install_synced(&c, 0), Err(SyncDrop::NoDestination));
    drop(bhub);
}
