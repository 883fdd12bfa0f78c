//! uvs-hostile: writes the hostile-traffic capture (see
//! `uvs_pktgen::hostile`) as a pcap file or stream, `--loops` times over,
//! for a `net_pcap` port of uvsd to replay (bench/HOSTILE.md).
//!
//! `--out` may be a FIFO: uvsd's `rx_pcap=` reads it as the frames are
//! written, so millions of frames pass without a file that size.

use std::fs::OpenOptions;
use std::io::BufWriter;
use std::path::PathBuf;

use clap::Parser;
use uvs_pktgen::hostile;

#[derive(Debug, Parser)]
#[command(about = "Write the hostile-traffic capture as pcap")]
struct Args {
    /// Where to write (a file, or a FIFO uvsd reads).
    #[arg(long)]
    out: PathBuf,
    /// Seed of the capture (the same seed, the same bytes).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many times the capture is written, one after the other.
    #[arg(long, default_value_t = 1)]
    loops: u64,
    /// Print the services as `uvsadm -R` input and exit.
    #[arg(long)]
    print_rules: bool,
    /// Print the uvsd port, routes and neighbours for DEVICE and exit.
    #[arg(long, value_name = "DEVICE")]
    print_port: Option<String>,
    /// Instead of writing: read the pcap stream at --out (what uvsd's
    /// `tx_pcap` wrote, a file or FIFO) to its end and print its frames by
    /// destination as JSON.
    #[arg(long)]
    count_sent: bool,
    /// Instead of writing: read `uvsadm --counters --json` output at --out
    /// and print the ledger (dataplane::net::ledger) of each worker and of
    /// the total as JSON; exit status 1 if a frame is unaccounted for.
    #[arg(long)]
    ledger: bool,
    /// Instead of writing the capture: write fuzz seeds from it under
    /// DIR: `wire/hostile-*` (20 frames of each class, one per file) and
    /// `pipeline/hostile-*` (runs of frames of up to 255 bytes, each
    /// behind its one-byte length).
    #[arg(long, value_name = "DIR")]
    fuzz_seeds: Option<PathBuf>,
}

fn main() {
    let a = Args::parse();
    if a.print_rules {
        print!("{}", hostile::rules());
        return;
    }
    if let Some(dev) = &a.print_port {
        print!("{}", hostile::uvsd_port(dev));
        return;
    }
    if let Some(dir) = &a.fuzz_seeds {
        std::process::exit(match write_seeds(dir, a.seed) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("uvs-hostile: {}: {e}", dir.display());
                1
            }
        });
    }
    if a.ledger {
        std::process::exit(print_ledger(&a.out));
    }
    if a.count_sent {
        let f = match std::fs::File::open(&a.out) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("uvs-hostile: {}: {e}", a.out.display());
                std::process::exit(1);
            }
        };
        let mut r = std::io::BufReader::with_capacity(1 << 20, f);
        match hostile::count_sent(&mut r) {
            Ok(s) => println!(
                "{{\"frames\":{},\"to_servers\":{},\"to_gateway\":{},\"multicast\":{},\"other\":{}}}",
                s.frames, s.to_servers, s.to_gateway, s.multicast, s.other
            ),
            Err(e) => {
                eprintln!("uvs-hostile: reading {}: {e}", a.out.display());
                std::process::exit(1);
            }
        }
        return;
    }
    let cap = hostile::capture(a.seed);
    let file = match OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&a.out)
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("uvs-hostile: {}: {e}", a.out.display());
            std::process::exit(1);
        }
    };
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let n = match hostile::write_pcap(&mut w, &cap.frames, a.loops) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("uvs-hostile: writing {}: {e}", a.out.display());
            std::process::exit(1);
        }
    };
    let classes: Vec<String> = cap
        .counts()
        .iter()
        .map(|(c, n)| format!("\"{}\":{n}", c.as_str()))
        .collect();
    println!(
        "{{\"seed\":{},\"capture_frames\":{},\"capture_bytes\":{},\"loops\":{},\"frames_written\":{n},\"classes\":{{{}}}}}",
        a.seed,
        cap.frames.len(),
        cap.bytes(),
        a.loops,
        classes.join(",")
    );
}

/// Prints the ledger of the counters in `path` (`uvsadm --counters
/// --json`); returns the exit status.
fn print_ledger(path: &std::path::Path) -> i32 {
    use dataplane::net::ledger::{Ledger, Sends};
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("uvs-hostile: {}: {e}", path.display());
            return 1;
        }
    };
    let v: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("uvs-hostile: {}: {e}", path.display());
            return 1;
        }
    };
    let one = |w: &serde_json::Value| -> (serde_json::Value, bool) {
        let named: Vec<(&str, u64)> = w
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.as_str(), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        let l = Ledger::of(named.iter().copied());
        let s = Sends::of(named.iter().copied());
        let ok = l.unaccounted() == 0
            && l.unclassified.is_empty()
            && s.is_none_or(|s| s.attempted == s.outcomes);
        let fates: serde_json::Map<String, serde_json::Value> = l
            .fates
            .iter()
            .map(|(k, v)| (k.clone(), (*v).into()))
            .collect();
        (
            serde_json::json!({
                "taken_in": l.taken_in,
                "accounted": l.accounted,
                "unaccounted": l.unaccounted() as i64,
                "unclassified": l.unclassified,
                "counted_twice": l.counted.iter().map(|(k, v)| serde_json::json!({k: v})).collect::<Vec<_>>(),
                "sends": s.map(|s| serde_json::json!({"attempted": s.attempted, "outcomes": s.outcomes})),
                "fates": fates,
            }),
            ok,
        )
    };
    let (total, mut ok) = one(&v["total"]);
    let mut per = vec![];
    for w in v["per_worker"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let (l, good) = one(w);
        ok &= good;
        per.push(l);
    }
    println!(
        "{}",
        serde_json::json!({"total": total, "per_worker": per, "balanced": ok})
    );
    if ok {
        0
    } else {
        1
    }
}

/// Writes fuzz seeds from the capture of `seed` under `dir`.
fn write_seeds(dir: &std::path::Path, seed: u64) -> std::io::Result<()> {
    let cap = hostile::capture(seed);
    let (wire, pipeline) = (dir.join("wire"), dir.join("pipeline"));
    std::fs::create_dir_all(&wire)?;
    std::fs::create_dir_all(&pipeline)?;
    for class in hostile::Class::ALL {
        let frames = cap
            .frames
            .iter()
            .zip(&cap.classes)
            .filter(|(f, c)| **c == class && !f.is_empty());
        for (i, (f, _)) in frames.clone().take(20).enumerate() {
            std::fs::write(wire.join(format!("hostile-{}-{i:02}", class.as_str())), f)?;
        }
        let short: Vec<&Vec<u8>> = frames.map(|(f, _)| f).filter(|f| f.len() <= 255).collect();
        for (i, run) in short.chunks(16).take(4).enumerate() {
            let mut input = vec![];
            for f in run {
                input.push(f.len() as u8);
                input.extend_from_slice(f);
            }
            std::fs::write(
                pipeline.join(format!("hostile-{}-{i}", class.as_str())),
                input,
            )?;
        }
    }
    Ok(())
}
