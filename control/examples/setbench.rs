//! In-process cost of an ipset restore (bench/SETS.md): the same
//! generated hash:net blocklist as bench/scripts/sets.sh, run through
//! `control::ipset::execute` on a fresh store, without socket or client.
//!
//!   cargo run --release -p control --example setbench [ENTRIES] [RUNS]

use std::time::Instant;

use control::ipset;
use dataplane::config::ConfigStore;

fn ip(a: u32) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(a)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u32 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let runs: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let mut text = format!(
        "create bl hash:net family inet hashsize 1048576 maxelem {}\n",
        n + n / 1000 + 16
    );
    for i in 0..n {
        let j = i / 3;
        match i % 3 {
            0 => text.push_str(&format!("add bl {}\n", ip(0x0a00_0000 + j))),
            1 => text.push_str(&format!("add bl {}/24\n", ip(0x1400_0000 + j * 256))),
            _ => text.push_str(&format!("add bl {}/20\n", ip(0x4000_0000 + j * 4096))),
        }
        if i % 1000 == 999 {
            text.push_str(&format!(
                "add bl {}/28 nomatch\n",
                ip(0x4000_0000 + j * 4096 + 16)
            ));
        }
    }
    for r in 0..runs {
        let mut store = ConfigStore::new();
        let t = Instant::now();
        let (resp, _) = ipset::execute(&mut store, &["restore".to_string()], Some(&text));
        let restore = t.elapsed();
        assert_eq!(resp.code, 0, "{}", resp.stderr);
        let t = Instant::now();
        let snap = store.snapshot();
        let publish = t.elapsed();
        let t = Instant::now();
        let (save, _) = ipset::execute(&mut store, &["save".to_string()], None);
        let saved = t.elapsed();
        println!(
            "run {r}: restore {:.3} s, snapshot {:.6} s, save {:.3} s ({} lines), {} sets",
            restore.as_secs_f64(),
            publish.as_secs_f64(),
            saved.as_secs_f64(),
            save.stdout.lines().count(),
            snap.sets.len()
        );
    }
}
