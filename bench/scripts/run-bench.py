#!/usr/bin/env python3
"""Runs benchmark suites as interleaved repeats and writes median and spread.

Why interleaved: two-process memif runs on these VMs flip between a fast and
a slow state from run to run (shared/reference/dpdk-notes.md). A figure is
only trustworthy next to the reference measured just before or after it, so
every round runs every case of a group back to back (alternating which goes
first), and uvsd figures are reported as the ratio to testpmd macswap of the
same round, with median and spread over the rounds.

    bench/scripts/run-bench.py testpmd --repeats 5 --duration 5 --out bench/results/testpmd
    bench/scripts/run-bench.py uvsd-established --methods nat --flows 1000,1000000 --out ...
    bench/scripts/run-bench.py --summarize bench/results/testpmd

Each run is one call of memif-testpmd.sh or memif-uvsd.sh; its JSON line
(uvs-pktgen's result) goes to OUT/runs.jsonl with suite, group, case and
round added. OUT/summary.md and OUT/summary.json hold the tables.
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def case(name, script, dut_arg, gen_args):
    return {"case": name, "script": script, "dut_arg": dut_arg, "gen": gen_args}


def testpmd_case(fwd, gen):
    return case(f"testpmd-{fwd}", "memif-testpmd.sh", fwd, gen)


def uvsd_case(method, gen):
    # "nat-replies": NAT with the generator answering as the real servers
    # (a 1:1 mix of requests and answers, round trips counted).
    if method == "nat-replies":
        return case("uvsd-nat-replies", "memif-uvsd.sh", "nat", gen + ["--replies"])
    return case(f"uvsd-{method}", "memif-uvsd.sh", method, gen)


def groups_for(a):
    """The suite as a list of groups; each group's first case is its reference."""
    common = ["--size", str(a.size), "--duration", str(a.duration), "--warmup", str(a.warmup)]
    protos = a.protos.split(",")
    flows = [int(f) for f in a.flows.split(",")]
    methods = a.methods.split(",")
    groups = []
    if a.suite == "testpmd":
        for p in protos:
            for f in flows:
                gen = common + ["--proto", p, "--flows", str(f)]
                groups.append({"group": f"{p} established {f} flows",
                               "cases": [testpmd_case("macswap", gen), testpmd_case("io", gen)]})
    elif a.suite == "testpmd-new":
        for p in protos:
            gen = common + ["--proto", p, "--mode", "new"]
            groups.append({"group": f"{p} new flows",
                           "cases": [testpmd_case("macswap", gen), testpmd_case("io", gen)]})
    elif a.suite == "uvsd-established":
        for p in protos:
            for f in flows:
                gen = common + ["--proto", p, "--flows", str(f)]
                groups.append({"group": f"{p} established {f} flows",
                               "cases": [testpmd_case("macswap", gen)]
                               + [uvsd_case(m, gen) for m in methods]})
    elif a.suite == "uvsd-new":
        for p in protos:
            gen = common + ["--proto", p, "--mode", "new"]
            groups.append({"group": f"{p} new flows",
                           "cases": [testpmd_case("macswap", gen)]
                           + [uvsd_case(m, gen) for m in methods]})
    elif a.suite == "uvsd-mixed":
        for p in protos:
            for f in flows:
                gen = common + ["--proto", p, "--flows", str(f), "--mode", "mixed",
                                "--new-every", str(a.new_every)]
                groups.append({"group": f"{p} mixed {f} flows, 1 new in {a.new_every}",
                               "cases": [testpmd_case("macswap", gen)]
                               + [uvsd_case(m, gen) for m in methods]})
    else:
        sys.exit(f"unknown suite {a.suite}")
    return groups


def cpu_busy(interval=0.5):
    """Fraction of all CPUs busy over `interval` seconds (/proc/stat)."""
    def sample():
        f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        idle = f[3] + f[4]
        return sum(f[:8]), idle
    t0, i0 = sample()
    time.sleep(interval)
    t1, i1 = sample()
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def wait_quiet(limit_s, threshold):
    """Waits (at most limit_s) until other processes leave the CPUs mostly idle.

    Returns the busy fraction seen last (before our run starts)."""
    deadline = time.time() + limit_s
    busy = cpu_busy()
    while busy > threshold and time.time() < deadline:
        time.sleep(1.0)
        busy = cpu_busy()
    return busy


def run_case(c, extra_env):
    cmd = [os.path.join(HERE, c["script"]), c["dut_arg"]] + c["gen"]
    if os.environ.get("BENCH_LOCK"):
        # One run at a time on a shared machine: each run holds the lock.
        cmd = ["flock", os.environ["BENCH_LOCK"]] + cmd
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    # Other processes on the two CPUs slow both sides: keep the load with the figure.
    load = float(open("/proc/loadavg").read().split()[0])
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **extra_env})
    line = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    try:
        r = json.loads(line)
    except json.JSONDecodeError:
        r = {"error": (p.stderr.strip().splitlines() or ["no output"])[-1], "rc": p.returncode}
    r["started"] = started
    r["loadavg_1min"] = load
    r["command"] = " ".join(["bench/scripts/" + c["script"], c["dut_arg"]] + c["gen"])
    return r


def run(a):
    os.makedirs(a.out, exist_ok=True)
    groups = groups_for(a)
    path = os.path.join(a.out, "runs.jsonl")
    # Appending to earlier rounds: continue their numbering (ratios pair by round).
    first = 0
    if os.path.exists(path):
        first = 1 + max((json.loads(l).get("round", -1) for l in open(path) if l.strip()), default=-1)
    with open(path, "a") as out:
        for rnd in range(first, first + a.repeats):
            order = groups[rnd % len(groups):] + groups[:rnd % len(groups)]
            for g in order:
                cases = g["cases"] if rnd % 2 == 0 else list(reversed(g["cases"]))
                for c in cases:
                    # A run whose generator or DUT lost its CPU to another process
                    # measures the neighbours: run it again (up to --retries times).
                    for attempt in range(1 + a.retries):
                        busy = wait_quiet(a.wait_quiet, a.quiet_below) if a.wait_quiet > 0 else cpu_busy()
                        r = run_case(c, {})
                        r["others_busy_before"] = busy
                        r["attempt"] = attempt
                        if "error" in r or clean(r, a.min_cpu_share) or attempt == a.retries:
                            break
                        print(f"round {rnd} | {g['group']} | {c['case']}: descheduled "
                              f"(CPU share gen {cpu(r, 'gen') or 0:.2f}, DUT {cpu(r, 'peer') or 0:.2f}), again",
                              file=sys.stderr)
                    r.update({"suite": a.suite, "group": g["group"], "case": c["case"],
                              "reference": g["cases"][0]["case"], "round": rnd})
                    out.write(json.dumps(r) + "\n")
                    out.flush()
                    msg = r.get("error") or f"{r['valid_mpps']:.3f} Mpps valid, loss {r['loss_pct']:.3f}%"
                    if "error" not in r and not clean(r, a.min_cpu_share):
                        msg += " (still descheduled: left out of the clean summary)"
                    print(f"round {rnd} | {g['group']} | {c['case']}: {msg}", file=sys.stderr)
    summarize(a.out)
    if a.min_cpu_share > 0:
        summarize(a.out, a.min_cpu_share)


def stats(xs):
    if not xs:
        return None
    m = statistics.median(xs)
    return {"n": len(xs), "median": m, "min": min(xs), "max": max(xs),
            "spread_pct": (max(xs) - min(xs)) * 100.0 / m if m else 0.0}


def cpu(r, who):
    """Share of the window the generator ("gen") or the DUT ("peer") ran."""
    return ((r.get(f"{who}_sched") or {}).get("cpu")) or None


def per_dut_cpu(r):
    """Mpps per second of DUT CPU time: the figure with descheduling taken out."""
    c = cpu(r, "peer")
    return r["valid_mpps"] / c if c else None


def clean(r, min_share):
    """Whether both the generator and the DUT ran at least min_share of the window."""
    if min_share <= 0:
        return True
    g, d = cpu(r, "gen"), cpu(r, "peer")
    return bool(g and d and g >= min_share and d >= min_share)


def summarize(out_dir, min_share=0.0):
    runs = [json.loads(l) for l in open(os.path.join(out_dir, "runs.jsonl")) if l.strip()]
    for r in runs:
        if "error" not in r and not clean(r, min_share):
            r["error"] = f"descheduled: a CPU share below {min_share}"
    table = {}
    for r in runs:
        key = (r["suite"], r["group"], r["case"])
        table.setdefault(key, []).append(r)
    rows = []
    for (suite, group, case_name), rs in table.items():
        ok = [r for r in rs if "error" not in r]
        ref_name = rs[0]["reference"]
        ratios, norm_ratios = [], []
        for r in ok:
            ref = [x for x in runs if x["suite"] == suite and x["group"] == group
                   and x["case"] == ref_name and x["round"] == r["round"] and "error" not in x]
            if ref and ref[0]["valid_mpps"] > 0 and case_name != ref_name:
                ratios.append(r["valid_mpps"] / ref[0]["valid_mpps"])
                if per_dut_cpu(r) and per_dut_cpu(ref[0]):
                    norm_ratios.append(per_dut_cpu(r) / per_dut_cpu(ref[0]))
        rows.append({
            "suite": suite, "group": group, "case": case_name, "reference": ref_name,
            "runs": len(rs), "failed": len(rs) - len(ok),
            "errors": sorted({r["error"] for r in rs if "error" in r}),
            "valid_mpps": stats([r["valid_mpps"] for r in ok]),
            "tx_mpps": stats([r["tx_mpps"] for r in ok]),
            "loss_pct": stats([r["loss_pct"] for r in ok]),
            "invalid": sum(r["rx_invalid"] for r in ok),
            "ratio_to_reference": stats(ratios),
            "gen_cpu_share": stats([c for c in (cpu(r, "gen") for r in ok) if c]),
            "dut_cpu_share": stats([c for c in (cpu(r, "peer") for r in ok) if c]),
            "mpps_per_dut_cpu": stats([x for x in (per_dut_cpu(r) for r in ok) if x]),
            "ratio_per_dut_cpu": stats(norm_ratios),
            "mem": sorted({r.get("mem", "?") for r in ok}),
            "command": rs[0]["command"],
        })
    suffix = f"-cpu{min_share:g}" if min_share > 0 else ""
    with open(os.path.join(out_dir, f"summary{suffix}.json"), "w") as f:
        json.dump(rows, f, indent=1)
    lines = ["| traffic | forwarder | runs | Mpps median | min - max | spread | loss median | "
             "CPU share gen / DUT | Mpps per DUT CPU-s | ratio to reference (median, min - max) | "
             "ratio per DUT CPU-s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        v, l, q = row["valid_mpps"], row["loss_pct"], row["ratio_to_reference"]
        if v is None:
            lines.append(f"| {row['group']} | {row['case']} | 0/{row['runs']} | "
                         f"failed: {'; '.join(row['errors'])} | | | | | | | |")
            continue
        is_ref = row["case"] == row["reference"]
        ratio = ("reference" if is_ref else
                 f"{q['median']:.3f} ({q['min']:.3f} - {q['max']:.3f}) vs {row['reference']}"
                 if q else "no paired round")
        g, d, n, nq = (row["gen_cpu_share"], row["dut_cpu_share"], row["mpps_per_dut_cpu"],
                       row["ratio_per_dut_cpu"])
        share = f"{g['median']:.2f} / {d['median']:.2f}" if g and d else "-"
        norm = f"{n['median']:.2f} ({n['min']:.2f} - {n['max']:.2f})" if n else "-"
        nratio = ("reference" if is_ref else
                  f"{nq['median']:.3f} ({nq['min']:.3f} - {nq['max']:.3f})" if nq else "-")
        lines.append(
            f"| {row['group']} | {row['case']} | {v['n']}/{row['runs']} | "
            f"{v['median']:.2f} | {v['min']:.2f} - {v['max']:.2f} | {v['spread_pct']:.0f} % | "
            f"{l['median']:.4f} % | {share} | {norm} | {ratio} | {nratio} |")
    with open(os.path.join(out_dir, f"summary{suffix}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("suite", nargs="?",
                   choices=["testpmd", "testpmd-new", "uvsd-established", "uvsd-new", "uvsd-mixed"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--protos", default="udp,tcp")
    p.add_argument("--flows", default="1000", help="comma-separated flow counts")
    p.add_argument("--methods", default="nat",
                   help="uvsd forwarding methods: nat,dr,tun, and nat-replies (NAT with answers)")
    p.add_argument("--new-every", type=int, default=10)
    p.add_argument("--out", default=None)
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                   help="before each run, wait up to S seconds for the CPUs to be mostly idle")
    p.add_argument("--quiet-below", type=float, default=0.25,
                   help="busy fraction of all CPUs that counts as quiet (default 0.25)")
    p.add_argument("--summarize", metavar="DIR", help="only rebuild DIR's summary from runs.jsonl")
    p.add_argument("--min-cpu-share", type=float, default=0.0,
                   help="count only runs where generator and DUT both ran at least this share "
                        "of the window (writes summary-cpuX.md; with --retries, re-runs others)")
    p.add_argument("--retries", type=int, default=0,
                   help="re-run a case up to this many times while it falls below --min-cpu-share")
    a = p.parse_args()
    if a.summarize:
        summarize(a.summarize, a.min_cpu_share)
        return
    if not a.suite:
        p.error("a suite is required")
    a.out = a.out or os.path.join(HERE, "..", "results", a.suite)
    run(a)


if __name__ == "__main__":
    main()
