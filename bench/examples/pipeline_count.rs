//! Instruction counts of the per-packet decision, for valgrind's callgrind
//! (counts are repeatable whatever else the machine does, unlike time):
//!
//!   cargo build --release -p uvs-bench --example pipeline_count
//!   valgrind --tool=callgrind --toggle-collect='pipeline_count::send' \
//!       target/release/examples/pipeline_count established 1000 100000
//!
//! Modes: `established N P` sends P ACKs of N established NAT flows;
//! `new SCHED P` sends P SYNs of new flows to a 10-server service.
//! Instructions per packet = the collected Ir / P (`send` copies the frame
//! into the buffer, parses it and runs `Lb::process`).

use dataplane::buf::{PacketBuf, TestBuf, TEST_HEADROOM};
use dataplane::lb::{Action, Lb, LbSettings};
use dataplane::wire::parse_packet;
use uvs_bench::{store, tcp, Routes};

fn lb(sched: &str, capacity: u32) -> Lb {
    let st = store(sched);
    let mut lb = Lb::new(
        0,
        LbSettings {
            capacity,
            ..LbSettings::default()
        },
        0,
    );
    lb.set_snapshot(st.snapshot());
    std::mem::forget(st);
    lb
}

/// Puts the buffer back to `len` bytes at the initial headroom after a
/// rewrite changed its size (an ICMP reply, an encapsulation), outside the
/// measured [`send`] and without a new allocation (a fresh `TestBuf`
/// zeroes 2 KiB, which used to be counted as the engine's work).
fn reset(buf: &mut TestBuf, len: usize) {
    if buf.len() == len {
        return;
    }
    let empty = buf.trim(buf.len());
    let h = buf.headroom();
    let moved = if h > TEST_HEADROOM {
        buf.prepend(h - TEST_HEADROOM)
    } else {
        buf.append(TEST_HEADROOM - h) && buf.adj(TEST_HEADROOM - h)
    };
    assert!(empty && moved && buf.append(len), "buffer reset");
}

/// The measured work: copy, parse, decide. The buffer must already have
/// `f`'s length (see [`reset`]).
#[inline(never)]
fn send(lb: &mut Lb, buf: &mut TestBuf, f: &[u8], now: u64) -> Action {
    buf.data_mut().copy_from_slice(f);
    let m = parse_packet(buf.data()).unwrap();
    lb.process(buf, &m, now, &Routes)
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let mode = a.get(1).map_or("established", String::as_str);
    let arg: String = a.get(2).cloned().unwrap_or_else(|| "1000".into());
    let packets: u32 = a.get(3).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let mut forwarded = 0u32;
    match mode {
        "new" => {
            let mut l = lb(&arg, packets + 1024);
            let mut buf = TestBuf::new(&tcp(0, true));
            let frames: Vec<Vec<u8>> = (0..packets).map(|k| tcp(k, true)).collect();
            for f in &frames {
                reset(&mut buf, f.len());
                if let Action::Forward(_) = send(&mut l, &mut buf, f, 1) {
                    forwarded += 1;
                }
            }
        }
        _ => {
            let n: u32 = arg.parse().unwrap();
            let mut l = lb("rr", n + n / 8 + 64);
            let mut buf = TestBuf::new(&tcp(0, true));
            for i in 0..n {
                let f = tcp(i, true);
                reset(&mut buf, f.len());
                send(&mut l, &mut buf, &f, 1);
            }
            let frames: Vec<Vec<u8>> = (0..4096u32)
                .map(|k| tcp(k.wrapping_mul(2_654_435_761) % n, false))
                .collect();
            for k in 0..packets {
                let f = &frames[(k & 4095) as usize];
                reset(&mut buf, f.len());
                if let Action::Forward(_) = send(&mut l, &mut buf, f, 2) {
                    forwarded += 1;
                }
            }
        }
    }
    println!("{mode} {arg}: {forwarded} of {packets} forwarded");
}
