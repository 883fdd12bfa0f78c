#!/usr/bin/env python3
"""Runs the single-process benchmark (uvs-loop) over its cases and writes
the table.

Why a separate suite: uvs-loop runs generator, pipeline and sink on one
thread, so its figures do not flip with the two-process fast/slow states of
the memif runs; the uvsd pipeline is measured against an empty pipeline in
the same process, round by round, and reported as the nanoseconds uvsd adds
per packet. That is the number to compare from commit to commit.

    bench/scripts/run-loop.py --out bench/results/loop            # every case
    bench/scripts/run-loop.py --quick --out /tmp/loop             # a smoke run
    bench/scripts/run-loop.py --summarize bench/results/loop

OUT/runs.jsonl holds every JSON line of every case (rounds and summaries),
OUT/summary.md and OUT/summary.json the table.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


def cases(quick):
    """(name, uvs-loop arguments) of the suite."""
    out = []
    flows = [1000, 1000000] if quick else [1000, 100000, 1000000, 10000000]
    for f in flows:
        for m in ["nat", "dr", "tun"]:
            out.append((f"udp established {f} flows {m}",
                        ["--proto", "udp", "--flows", str(f), "--method", m]))
    # NAT for requests and the real servers' answers (a 1:1 mix).
    for f in [1000, 1000000]:
        out.append((f"udp established {f} flows nat with replies",
                    ["--proto", "udp", "--flows", str(f), "--method", "nat", "--replies"]))
    for f in ([1000] if quick else [1000, 1000000]):
        for m in (["nat"] if quick else ["nat", "dr", "tun"]):
            out.append((f"tcp established {f} flows {m}",
                        ["--proto", "tcp", "--flows", str(f), "--method", m]))
    for p in ["udp", "tcp"]:
        out.append((f"{p} new flows nat", ["--proto", p, "--mode", "new", "--method", "nat"]))
    out.append(("udp mixed 1000000 flows 1 new in 10 nat",
                ["--proto", "udp", "--mode", "mixed", "--flows", "1000000", "--method", "nat"]))
    for h in ["none", "all"]:
        out.append((f"udp established 1000 flows nat, 2 workers, hand-over {h}",
                    ["--proto", "udp", "--flows", "1000", "--workers", "2", "--handover", h]))
        if not quick:
            out.append((f"udp established 1000000 flows nat, 2 workers, hand-over {h}",
                        ["--proto", "udp", "--flows", "1000000", "--workers", "2",
                         "--handover", h]))
    return out


def build():
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "uvs-pktgen", "--bin", "uvs-loop"],
                   cwd=ROOT, check=True)
    return os.path.join(ROOT, "target", "release", "uvs-loop")


def summarize(out):
    rows = []
    with open(os.path.join(out, "runs.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r.get("summary"):
                rows.append(r)
    order = [name for name, _ in cases(False)]
    rows.sort(key=lambda r: order.index(r["label"]) if r["label"] in order else len(order))
    meta = {}
    meta_path = os.path.join(out, "meta.json")
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
    lines = ["# uvs-loop: uvsd's pipeline against an empty one, one process, one core", ""]
    if meta:
        lines += [f"Run {meta.get('started', '?')} on {meta.get('host', '?')}, "
                  f"load average before: {meta.get('load', '?')}; "
                  f"{meta.get('rounds')} rounds of {meta.get('duration')} s per pipeline, "
                  f"alternating.", ""]
    lines += ["| case | empty Mpps (median) | uvsd Mpps (median, min-max) | ratio | "
              "uvsd ns/packet | round trips/s (M) | descheduled rounds | hand-overs | "
              "refused (table full) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        u = r["uvsd_mpps"]
        trips = f"{r['round_trips_median_mpps']:.2f}" if r.get("replies") else "-"
        lines.append(
            f"| {r['label']} | {r['empty_median_mpps']:.2f} | {r['uvsd_median_mpps']:.2f} "
            f"({min(u):.2f}-{max(u):.2f}) | {r['ratio']:.3f} | {r['uvsd_ns_per_packet']:.1f} | "
            f"{trips} | {r.get('descheduled_rounds', '-')} | "
            f"{r['handed_over']} | {r.get('table_full', '-')} |")
    lines.append("")
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write("\n".join(lines))
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print("\n".join(lines))
    plot(out, rows)


def plot(out, rows):
    """Two PNGs: ns per packet uvsd adds, per case (rounds as dots); and
    Mpps against flow count, uvsd beside the empty pipeline."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plots", file=sys.stderr)
        return
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(rows) + 1.2))
    names = [r["label"] for r in rows]
    ns = [r["uvsd_ns_per_packet"] for r in rows]
    y = list(range(len(rows)))
    ax.barh(y, ns, color="#4c72b0")
    for i, r in enumerate(rows):
        e = statistics_median(r["empty_mpps"])
        dots = [1e3 / u - 1e3 / e for u in r["uvsd_mpps"] if u > 0 and e > 0]
        ax.plot(dots, [i] * len(dots), "o", color="#222222", markersize=3)
        ax.text(max([ns[i]] + dots), i, f"  {ns[i]:.0f}", va="center", fontsize=8)
    ax.set_yticks(y)
    ax.set_yticklabels(names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("ns per packet uvsd adds to the empty pipeline\n"
                  "(bar: medians; dots: each uvsd round against the empty median)")
    ax.set_title("uvs-loop: uvsd's worker pipeline, one process, one core")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "loop-ns-per-packet.png"), dpi=110)
    plt.close(fig)

    est = [r for r in rows if r["mode"] == "established" and r["proto"] == "udp"
           and r["workers"] == 1]
    if not est:
        return
    fig, ax = plt.subplots(figsize=(7, 4.2))
    colours = {"nat": "#4c72b0", "dr": "#55a868", "tun": "#c44e52"}
    for m in ["nat", "dr", "tun"]:
        pts = sorted((r["flows"], r["uvsd_median_mpps"]) for r in est if r["method"] == m)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=colours[m],
                    label=f"uvsd {m.upper()}")
    pts = sorted((r["flows"], r["empty_median_mpps"]) for r in est if r["method"] == "nat")
    ax.plot([p[0] for p in pts], [p[1] for p in pts], "s--", color="#888888",
            label="empty pipeline (rx -> tx)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("established UDP flows")
    ax.set_ylabel("Mpps, one core (median of the rounds)")
    ax.set_title("uvs-loop: Mpps against flow count, 64 B")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "loop-mpps-vs-flows.png"), dpi=110)
    plt.close(fig)


def statistics_median(v):
    v = sorted(v)
    n = len(v)
    if n == 0:
        return 0.0
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=2.0)
    ap.add_argument("--quick", action="store_true", help="fewer cases, 2 rounds of 0.5 s")
    ap.add_argument("--only", default="", help="run only cases whose name contains this")
    ap.add_argument("--summarize", action="store_true", help="only rewrite the tables of OUT")
    a = ap.parse_args()
    if a.summarize:
        summarize(a.out)
        return
    if a.quick:
        a.rounds, a.duration = 2, 0.5
    os.makedirs(a.out, exist_ok=True)
    exe = build()
    with open(os.path.join(a.out, "meta.json"), "w") as f:
        json.dump({"started": datetime.datetime.utcnow().isoformat(timespec="seconds") + "Z",
                   "host": os.uname().nodename, "load": os.getloadavg()[0],
                   "rounds": a.rounds, "duration": a.duration,
                   "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                            capture_output=True, text=True).stdout.strip()}, f)
    runs_path = os.path.join(a.out, "runs.jsonl")
    kept = []
    if a.only and os.path.exists(runs_path):
        # Re-running some cases: keep the others' lines.
        with open(runs_path) as f:
            kept = [l for l in f if a.only not in json.loads(l).get("label", "")]
    runs = open(runs_path, "w")
    runs.writelines(kept)
    failed = 0
    for name, args in cases(a.quick):
        if a.only and a.only not in name:
            continue
        cmd = [exe, "--rounds", str(a.rounds), "--duration", str(a.duration), "--label", name] + args
        print("+", " ".join(cmd[1:]), file=sys.stderr, flush=True)
        p = subprocess.run(cmd, capture_output=True, text=True)
        sys.stderr.write(p.stderr)
        if p.returncode != 0:
            failed += 1
            continue
        runs.write(p.stdout)
        runs.flush()
    runs.close()
    summarize(a.out)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
