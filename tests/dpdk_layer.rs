//! The safe DPDK layer against a real EAL (one per test process, so one
//! test function): mbuf ownership and pool accounting, bursts, rings,
//! a port on net_null, the RSS a two-queue net_tap port reports (it refuses
//! the endpoint-only hash, the key and the table, and starts anyway),
//! lcore launch with panics caught,
//! and cleanup of the runtime directory.

mod common;

use std::sync::Arc;

use dataplane::buf::PacketBuf;
use dataplane::dpdk::{lcore, Burst, DpdkError, Eal, Mempool, Port, PortConf, Ring, BURST_SIZE};
use dataplane::rss::{Ownership, RssSide};
use dataplane::worker::Mesh;

#[test]
fn dpdk_layer_end_to_end() {
    common::require_root();
    let prefix = common::unique("layer");
    let args = [
        "-l".to_string(),
        "0-1".into(),
        "--no-pci".into(),
        "--no-huge".into(),
        "-m".into(),
        "128".into(),
        format!("--file-prefix={prefix}"),
    ];
    let eal = Eal::init(&args).expect("EAL starts");
    assert!(
        matches!(Eal::init(&args), Err(DpdkError::EalTwice)),
        "one EAL per process"
    );
    let runtime = eal.runtime_dir().expect("runtime dir").to_path_buf();
    assert!(runtime.exists());

    // Mbufs: PacketBuf semantics and return to the pool on drop.
    let pool = Arc::new(Mempool::new(&eal, "t_pool", 1023, 0, -1).unwrap());
    let full = pool.available();
    let mut m = pool.alloc().unwrap();
    assert_eq!(m.len(), 0);
    assert!(m.append(4));
    m.data_mut().copy_from_slice(&[1, 2, 3, 4]);
    assert!(m.prepend(2));
    assert_eq!(m.len(), 6);
    assert!(m.adj(2));
    assert_eq!(m.data(), &[1, 2, 3, 4]);
    assert!(m.trim(1));
    assert_eq!(m.data(), &[1, 2, 3]);
    assert!(!m.prepend(129), "default headroom is 128");
    assert!(!m.trim(4));
    assert_eq!(pool.available(), full - 1);
    drop(m);
    assert_eq!(pool.available(), full, "dropped mbuf went back");

    // Bursts: bulk free, drain in order.
    let mut b = Burst::new();
    for i in 0..BURST_SIZE {
        let mut m = pool.alloc().unwrap();
        assert!(m.append(1));
        m.data_mut()[0] = i as u8;
        b.push(m).unwrap();
    }
    assert!(
        b.push(pool.alloc().unwrap()).is_err(),
        "full burst gives the mbuf back"
    );
    assert_eq!(pool.available(), full - BURST_SIZE as u32);
    let firsts: Vec<u8> = b.drain().take(3).map(|m| m.data()[0]).collect();
    assert_eq!(firsts, [0, 1, 2]);
    assert!(b.is_empty());
    assert_eq!(pool.available(), full, "the rest of the drain was freed");

    // Rings move ownership.
    let ring = Ring::new(&eal, "t_ring", 64, false).unwrap();
    for _ in 0..5 {
        b.push(pool.alloc().unwrap()).unwrap();
    }
    assert_eq!(ring.enqueue(&mut b), 5);
    assert!(b.is_empty());
    assert_eq!(ring.count(), 5);
    assert_eq!(ring.dequeue(&mut b), 5);
    b.clear();
    assert_eq!(pool.available(), full);

    // The workers' mesh: one ring per ordered pair; what worker 0 puts in
    // its ring toward 2 comes out of the ring 2 drains from 0, and nowhere
    // else.
    let mesh = Mesh::new(&eal, "t_mesh", 3, 64).unwrap();
    let links: Vec<_> = (0..3).map(|w| mesh.links(w)).collect();
    for (w, l) in links.iter().enumerate() {
        assert_eq!(l.to.len(), 3);
        assert!(l.to[w].is_none(), "no ring to itself");
        assert_eq!(l.from.len(), 2, "one ring from each other worker");
    }
    for _ in 0..3 {
        b.push(pool.alloc().unwrap()).unwrap();
    }
    assert_eq!(links[0].to[2].as_ref().unwrap().enqueue(&mut b), 3);
    let got: Vec<u32> = links[2].from.iter().map(|r| r.count()).collect();
    assert_eq!(got.iter().sum::<u32>(), 3);
    assert!(got.contains(&3));
    assert!(links[1].from.iter().all(|r| r.count() == 0));
    for r in &links[2].from {
        r.dequeue(&mut b);
    }
    assert_eq!(b.len(), 3);
    b.clear();
    drop(links);
    drop(mesh);
    assert_eq!(pool.available(), full);

    // A port: tx to net_null consumes, rx from it gives empty frames.
    let conf = PortConf {
        name: "null".into(),
        device: "net_null0".into(),
        rx_queues: 1,
        tx_queues: 1,
        mac: Some([2, 0, 0, 0, 0, 9]),
        descriptors: 128,
        tap_shares_mac: false,
    };
    let port = Arc::new(Port::open(&eal, &conf, Arc::clone(&pool)).unwrap());
    assert_eq!(port.driver(), "net_null");
    assert_eq!(port.mac(), [2, 0, 0, 0, 0, 9]);
    let mut q = port.claim(Some(0), 0).unwrap();
    assert!(port.claim(Some(0), 0).is_err(), "a queue is claimed once");
    assert!(port.claim(None, 1).is_err(), "out of range");
    let got = q.rx_burst(&mut b);
    assert_eq!(got, BURST_SIZE, "net_null always has frames");
    assert_eq!(q.tx_burst(&mut b), BURST_SIZE);
    assert!(b.is_empty());
    drop(q);
    assert!(port.claim(Some(0), 0).is_ok(), "released on drop");

    // RSS on the client endpoint over two tap queues: net_tap refuses most
    // of it, the port starts anyway and says what it has.
    let tap = PortConf {
        name: "rss".into(),
        device: format!("net_tap9,iface={}", common::unique("rss")),
        rx_queues: 2,
        tx_queues: 2,
        mac: None,
        descriptors: 128,
        tap_shares_mac: false,
    };
    let tap = Arc::new(Port::open_rss(&eal, &tap, RssSide::Client, Arc::clone(&pool)).unwrap());
    let rss = tap.rss().clone();
    let line = rss.describe();
    assert_eq!((rss.side, rss.queues), (RssSide::Client, 2));
    assert_ne!(rss.fields, 0, "RSS is on: {line}");
    assert_eq!(tap.rss_hf, rss.fields);
    assert_eq!(rss.requested & !rss.fields, 0, "{line}");
    // net_tap hashes its own way: no endpoint-only fields, no settable key,
    // no table. All of it is reported, none of it is claimed.
    assert!(!rss.endpoint_only(), "{line}");
    assert!(!rss.key_set && line.contains("refused the key"), "{line}");
    assert!(
        rss.reta.is_none() && line.contains("redirection table"),
        "{line}"
    );
    assert!(!rss.nic_ownership(), "{line}");
    let e = Ownership::from_tables(2, &rss.reta.into_iter().collect::<Vec<_>>()).unwrap_err();
    assert!(e.contains("no multi-queue port"), "{e}");
    let q1 = tap.claim(Some(1), 1).expect("second queue usable");
    drop(q1);
    drop(tap);

    // Workers: return values and panics come back through wait().
    lcore::launch(&eal, 1, || 7).unwrap();
    assert_eq!(lcore::wait(&eal, 1), 7);
    lcore::launch(&eal, 1, || panic!("worker test panic")).unwrap();
    assert_eq!(lcore::wait(&eal, 1), -1, "panic caught at the boundary");
    assert!(
        lcore::launch(&eal, 0, || 0).is_err(),
        "main lcore is not a worker"
    );

    drop(port);
    drop(ring);
    drop(pool);
    drop(eal);
    assert!(!runtime.exists(), "runtime dir removed");
}
