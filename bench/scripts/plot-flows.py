#!/usr/bin/env python3
"""Mpps against flow count, one line per forwarder, from a run-bench.py
uvsd-established result directory (groups named "<proto> established N
flows"): the median of the clean runs, bars from the slowest to the fastest.

    bench/scripts/plot-flows.py bench/results/final-udp-established [--out FILE.png]
"""

import argparse
import json
import os
import re

COLOURS = {"testpmd-macswap": "#888888", "uvsd-nat": "#4c72b0", "uvsd-dr": "#55a868",
           "uvsd-tun": "#c44e52"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--out")
    a = ap.parse_args()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = os.path.join(a.dir, "summary-cpu0.9.json")
    if not os.path.exists(p):
        p = os.path.join(a.dir, "summary.json")
    with open(p) as f:
        rows = json.load(f)
    lines = {}
    proto = ""
    for r in rows:
        m = re.match(r"(\w+) established (\d+) flows", r["group"])
        v = r["valid_mpps"]
        if not m or not v.get("n"):
            continue
        proto = m.group(1).upper()
        lines.setdefault(r["case"], []).append((int(m.group(2)), v["median"], v["min"], v["max"]))
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for case, pts in lines.items():
        pts.sort()
        xs = [p[0] for p in pts]
        ys = [p[1] for p in pts]
        lo = [p[1] - p[2] for p in pts]
        hi = [p[3] - p[1] for p in pts]
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o-" if case.startswith("uvsd") else "s--",
                    capsize=3, color=COLOURS.get(case), label=case)
    ax.set_xscale("log")
    ax.set_xlabel(f"established {proto} flows")
    ax.set_ylabel("Mpps returned and checked (median; bars: min - max)")
    ax.set_title(f"uvsd beside testpmd macswap over net_memif, one core each, 64 B")
    ax.set_ylim(bottom=0)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = a.out or os.path.join(a.dir, "mpps-vs-flows.png")
    fig.savefig(out, dpi=110)
    print(out)


if __name__ == "__main__":
    main()
