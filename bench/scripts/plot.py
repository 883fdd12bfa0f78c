#!/usr/bin/env python3
"""Plots run-bench.py results: Mpps per forwarder, and ratios to the reference.

    bench/scripts/plot.py bench/results/testpmd [more result dirs] --out bench/plots

For every result directory (its runs.jsonl) it draws one chart: for each
traffic group, one bar per forwarder at the median of the rounds, a line
from the slowest to the fastest round, and every round as a dot (so the
fast and slow states of two-process memif runs stay visible). When a group
has cases other than its reference, a second chart shows each round's ratio
to the reference of the same round. Bars (PNG) use only runs where generator and DUT
both had at least 90 % of their CPU; descheduled runs are hollow grey dots. PNG through matplotlib when it is
installed (pip install matplotlib), else a hand-written SVG of the same bars.
"""

import argparse
import json
import os
import statistics

COLOURS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]


def load(d):
    runs = [json.loads(l) for l in open(os.path.join(d, "runs.jsonl")) if l.strip()]
    runs = [r for r in runs if "error" not in r]
    groups, cases = [], []
    for r in runs:
        if r["group"] not in groups:
            groups.append(r["group"])
        if r["case"] not in cases:
            cases.append(r["case"])
    return runs, groups, cases


MIN_SHARE = 0.9


def clean(r):
    """Generator and DUT both ran at least MIN_SHARE of the window."""
    g = (r.get("gen_sched") or {}).get("cpu") or 0
    d = (r.get("peer_sched") or {}).get("cpu") or 0
    return g >= MIN_SHARE and d >= MIN_SHARE


def values(runs, group, case, key="valid_mpps"):
    return [r[key] for r in runs if r["group"] == group and r["case"] == case]


def clean_values(runs, group, case):
    return values([r for r in runs if clean(r)], group, case)


def ratios(runs, group, case):
    out = []
    for r in runs:
        if r["group"] != group or r["case"] != case or r["case"] == r["reference"]:
            continue
        ref = [x for x in runs if x["group"] == group and x["case"] == r["reference"]
               and x["round"] == r["round"]]
        if ref and ref[0]["valid_mpps"] > 0:
            out.append(r["valid_mpps"] / ref[0]["valid_mpps"])
    return out


def title_of(runs, d):
    r = runs[0]
    return (f"{os.path.basename(os.path.normpath(d))}: {r['frame_size']} B frames over net_memif, "
            f"one core each ({r.get('mem', '?')}), {len({x['round'] for x in runs})} interleaved rounds")


def bars_png(plt, runs, groups, cases, title, ylabel, path, getter):
    fig, ax = plt.subplots(figsize=(max(7.5, 1.8 * len(groups) * max(1, len(cases)) / 2 + 2), 4.5))
    width = 0.8 / len(cases)
    for ci, c in enumerate(cases):
        for gi, g in enumerate(groups):
            x = gi + (ci - (len(cases) - 1) / 2) * width
            if getter is values:
                # Bars from clean runs only; descheduled runs as hollow grey dots.
                ok = clean_values(runs, g, c)
                bad = [r["valid_mpps"] for r in runs
                       if r["group"] == g and r["case"] == c and not clean(r)]
                ax.plot([x] * len(bad), bad, "o", mfc="none", color="grey", markersize=4,
                        label="descheduled run" if gi == 0 and ci == 0 else None)
                xs = ok
            else:
                xs = getter(runs, g, c)
            if not xs:
                ax.bar(x, 0, width * 0.9, color=COLOURS[ci % len(COLOURS)],
                       label=c if gi == 0 else None)
                continue
            med = statistics.median(xs)
            ax.bar(x, med, width * 0.9, color=COLOURS[ci % len(COLOURS)],
                   label=c if gi == 0 else None)
            ax.vlines(x, min(xs), max(xs), color="black", linewidth=1)
            ax.plot([x] * len(xs), xs, "o", color="black", markersize=3)
            ax.annotate(f"{med:.2f}", (x, med), ha="center", va="bottom", fontsize=8,
                        xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bars_svg(runs, groups, cases, title, ylabel, path, getter):
    w, h, left, bottom, top = 160 * len(groups) + 120, 360, 60, 60, 40
    ymax = max((max(getter(runs, g, c) or [0]) for g in groups for c in cases), default=1) * 1.1 or 1
    sy = lambda v: h - bottom - (h - bottom - top) * v / ymax
    gw = (w - left - 20) / len(groups)
    bw = gw * 0.8 / len(cases)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
           f'<text x="{w / 2}" y="18" text-anchor="middle">{title}</text>',
           f'<text x="14" y="{h / 2}" transform="rotate(-90 14 {h / 2})" text-anchor="middle">{ylabel}</text>',
           f'<line x1="{left}" y1="{sy(0)}" x2="{w - 20}" y2="{sy(0)}" stroke="black"/>']
    for t in range(6):
        v = ymax * t / 5
        out.append(f'<text x="{left - 4}" y="{sy(v) + 4}" text-anchor="end">{v:.1f}</text>')
    for gi, g in enumerate(groups):
        out.append(f'<text x="{left + gi * gw + gw / 2}" y="{h - bottom + 16}" text-anchor="middle">{g}</text>')
        for ci, c in enumerate(cases):
            xs = getter(runs, g, c)
            if not xs:
                continue
            med = statistics.median(xs)
            x = left + gi * gw + gw * 0.1 + ci * bw
            out.append(f'<rect x="{x:.1f}" y="{sy(med):.1f}" width="{bw * 0.9:.1f}" height="{sy(0) - sy(med):.1f}" '
                       f'fill="{COLOURS[ci % len(COLOURS)]}"/>')
            cx = x + bw * 0.45
            out.append(f'<line x1="{cx:.1f}" y1="{sy(min(xs)):.1f}" x2="{cx:.1f}" y2="{sy(max(xs)):.1f}" stroke="black"/>')
            out.append(f'<text x="{cx:.1f}" y="{sy(med) - 4:.1f}" text-anchor="middle">{med:.2f}</text>')
    for ci, c in enumerate(cases):
        out.append(f'<rect x="{left + ci * 150}" y="{h - 22}" width="10" height="10" fill="{COLOURS[ci % len(COLOURS)]}"/>'
                   f'<text x="{left + ci * 150 + 14}" y="{h - 13}">{c}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+")
    p.add_argument("--out", default=None, help="directory for the images (default: each result dir)")
    a = p.parse_args()
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        plt = None
    for d in a.dirs:
        runs, groups, cases = load(d)
        if not runs:
            continue
        out = a.out or d
        os.makedirs(out, exist_ok=True)
        name = os.path.basename(os.path.normpath(d))
        charts = [(f"{name}-mpps", "Mpps returned (valid); bars: runs with >= 90 % CPU", cases, values)]
        others = [c for c in cases if any(ratios(runs, g, c) for g in groups)]
        if others:
            charts.append((f"{name}-ratio", "ratio to the reference of the same round", others, ratios))
        for stem, ylabel, cs, getter in charts:
            if plt:
                path = os.path.join(out, stem + ".png")
                bars_png(plt, runs, groups, cs, title_of(runs, d), ylabel, path, getter)
            else:
                path = os.path.join(out, stem + ".svg")
                bars_svg(runs, groups, cs, title_of(runs, d), ylabel, path, getter)
            print(path)


if __name__ == "__main__":
    main()
