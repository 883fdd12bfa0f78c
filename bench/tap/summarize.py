#!/usr/bin/env python3
"""Summarise bench/tap/run.sh's results.tsv as Markdown (bench/TAP.md's tables).

Per method and metric: median, min and max of each forwarder over the
rounds, the uvsd/testpmd ratio of each round (both measured back to back
in that round) and the median of those ratios. Rounds where either
forwarder has no figure (a failed path check) are left out of the ratios
and said so.

Several files (runs) are pooled: their rounds are taken together, each
still pairing the two forwarders of the same round of the same run, and the
per-round table is left out.

Usage: summarize.py results.tsv [more results.tsv ...]
"""
import csv
import statistics
import sys

METRICS = [
    ("conn_per_s", "new TCP conn/s (wrk, Connection: close)", 1.0, "%.0f"),
    ("up_bps", "iperf3 client->server, Gbit/s", 1e9, "%.3f"),
    ("down_bps", "iperf3 server->client (-R), Gbit/s", 1e9, "%.3f"),
]


def num(v):
    try:
        return float(v)
    except ValueError:
        return None


def main():
    rows = []
    for k, path in enumerate(sys.argv[1:]):
        for r in csv.DictReader(open(path), delimiter="\t"):
            r["key"] = (k, int(r["round"]))
            rows.append(r)
    for method in sorted({r["method"] for r in rows}):
        mine = [r for r in rows if r["method"] == method]
        rounds = sorted({r["key"] for r in mine})
        by = {(r["key"], r["forwarder"]): r for r in mine}
        nruns = len({k for k, _ in rounds})
        pooled = f" from {nruns} runs, pooled" if nruns > 1 else ""
        print(f"### {method.upper()}: {len(rounds)} rounds{pooled}\n")
        print("| metric | testpmd median (min-max) | uvsd median (min-max) "
              "| uvsd/testpmd per round | median ratio |")
        print("|---|---|---|---|---|")
        for key, label, scale, fmt in METRICS:
            cells = []
            for f in ("testpmd", "uvsd"):
                vs = [num(by[(r, f)][key]) for r in rounds if (r, f) in by]
                vs = [v / scale for v in vs if v is not None]
                if vs:
                    cells.append(f"{fmt % statistics.median(vs)} "
                                 f"({fmt % min(vs)}-{fmt % max(vs)})")
                else:
                    cells.append("n/a")
            ratios, per = [], []
            for r in rounds:
                a = num(by.get((r, "testpmd"), {}).get(key, "NA"))
                b = num(by.get((r, "uvsd"), {}).get(key, "NA"))
                if a and b is not None:
                    ratios.append(b / a)
                    per.append("%.2f" % (b / a))
                else:
                    per.append("-")
            med = "%.2f" % statistics.median(ratios) if ratios else "n/a"
            print(f"| {label} | {cells[0]} | {cells[1]} | {' '.join(per)} | {med} |")
        print()
        if nruns > 1:
            continue
        print("| round | forwarder (in order) | loadavg 1/5/15 at start | conn/s | wrk errors | SYN retrans "
              "| up Gbit/s | down Gbit/s | other processes >20% CPU at start |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in sorted(mine, key=lambda r: (r["key"], int(r["slot"]))):
            up, down = num(r["up_bps"]), num(r["down_bps"])
            print(f"| {r['round']} | {r['forwarder']} | {r['loadavg']} | {r['conn_per_s']} "
                  f"| {r['wrk_errors']} | {r.get('syn_retrans', '-')} | {'%.3f' % (up / 1e9) if up else 'NA'} "
                  f"| {'%.3f' % (down / 1e9) if down else 'NA'} | {r.get('busy_others', '-')} |")
        print()


if __name__ == "__main__":
    main()
