#!/usr/bin/env python3
"""Compact Markdown tables of run-bench.py results, for bench/RESULTS.md.

    bench/scripts/table.py bench/results/final-udp-established [more dirs]

For each result directory (its summary-cpu0.9.json, or summary.json when
run without --min-cpu-share) one row per traffic group and forwarder: the
clean runs, Mpps median and range, the per-round ratio to the group's
reference (testpmd macswap) with its range, and the ratio of the two
medians, and the ratio of uvsd's median to the reference's fastest run.
Three figures because testpmd itself flips between a fast (~15 Mpps) and a
slow (~5 Mpps) state from run to run: the per-round ratio pairs each uvsd
run with the testpmd run next to it, the ratio of medians compares with
whichever state testpmd was in most often, and the last compares with its
fast state (the most demanding reading).
"""

import json
import os
import sys


def rows(d):
    for name in ("summary-cpu0.9.json", "summary.json"):
        p = os.path.join(d, name)
        if os.path.exists(p):
            with open(p) as f:
                return json.load(f)
    raise SystemExit(f"{d}: no summary")


def main():
    print("| traffic | forwarder | clean runs | Mpps median (min - max) | ratio per round, median "
          "(min - max) | median / reference median | median / reference fastest |")
    print("|---|---|---|---|---|---|---|")
    for d in sys.argv[1:]:
        rs = rows(d)
        ref = {r["group"]: r for r in rs if r["case"] == r["reference"]}
        for r in rs:
            v = r["valid_mpps"]
            if not v.get("n"):
                continue
            mpps = f"{v['median']:.2f} ({v['min']:.2f} - {v['max']:.2f})"
            if r["case"] == r["reference"]:
                ratio, mm, mf = "reference", "reference", "reference"
            else:
                q = r.get("ratio_to_reference") or {}
                ratio = (f"{q['median']:.2f} ({q['min']:.2f} - {q['max']:.2f})"
                         if q.get("n") else "-")
                rv = ref.get(r["group"], {}).get("valid_mpps", {})
                mm = f"{v['median'] / rv['median']:.2f}" if rv.get("median") else "-"
                mf = f"{v['median'] / rv['max']:.2f}" if rv.get("max") else "-"
            print(f"| {r['group']} | {r['case']} | {v['n']}/{r['runs']} | {mpps} | {ratio} | {mm} "
                  f"| {mf} |")


if __name__ == "__main__":
    main()
