#!/usr/bin/env bash
# Instructions per packet of uvsd's worker pipeline (Worker::poll: the
# stack, the load-balancing stage, the ring port's rx/tx), counted by
# callgrind in uvs-loop: repeatable on a shared machine, unlike time.
#
#   bench/scripts/loop-instructions.sh [uvs-loop options]
#   e.g. bench/scripts/loop-instructions.sh --method dr --flows 1000
#
# Two runs, of 1 and 3 seconds: "instructions_per_packet" is the marginal
# figure, (instructions of the long run - the short one's) / (packets of
# the long run - the short one's). Fixed costs (the warm-up opening every
# flow, start-up) cancel out, so the figure does not depend on how many
# packets a busy machine let the runs process; "whole_run_per_packet" is the
# long run's plain quotient, fixed costs included.
#
# LOOP_DURATIONS="A B" (default "1 3") sets the two runs' lengths in
# seconds, e.g. "0.3 0.7" for --mode new with --method snat, where a longer
# run would use up the worker's 64,512 ports of the address and measure
# refusals instead of new mappings. Use "0.4 1.2" for every --mode new
# case: past 65,536 connections the worker turns on its batched warm-up
# lookups, so with the default lengths how many packets a run got would
# decide which path is measured.
#
# UVS_LOOP=path counts that binary instead of building the worktree's (to
# compare a saved "before" build with the current one). CG_KEEP=path keeps
# the long run's callgrind profile there (callgrind_annotate path shows
# where the instructions go).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${UVS_LOOP:-$root/target/release/uvs-loop}
[ -n "${UVS_LOOP:-}" ] || (cd "$root" && cargo build --release -q -p uvs-pktgen --bin uvs-loop)
out=$(mktemp -d)
trap '[ -z "${CG_KEEP:-}" ] || cp "$out/cg3" "$CG_KEEP" 2>/dev/null; rm -rf "$out"' EXIT
read -r short long <<<"${LOOP_DURATIONS:-1 3}"
# Files are named 1 (the short run) and 3 (the long one), whatever the
# durations.
for d in 1 3; do
    secs=$short
    [ "$d" = 1 ] || secs=$long
    valgrind --tool=callgrind --callgrind-out-file="$out/cg$d" --toggle-collect='*Worker*poll*' \
        "$bin" --rounds 1 --duration "$secs" --warmup 0.2 "$@" \
        >"$out/stdout$d" 2>"$out/stderr$d" || { cat "$out/stderr$d" >&2; exit 1; }
    callgrind_annotate "$out/cg$d" 2>/dev/null |
        awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}' >"$out/ir$d"
done
python3 - "$out" "$*" <<'PY'
import json, sys
out, args = sys.argv[1], sys.argv[2]
def run(d):
    ir = int(open(f"{out}/ir{d}").read())
    s = [json.loads(l) for l in open(f"{out}/stdout{d}") if '"summary"' in l][-1]
    return ir, s["uvsd_total_packets"]
(i1, p1), (i3, p3) = run(1), run(3)
print(json.dumps({"args": args, "instructions": [i1, i3], "packets": [p1, p3],
                  "instructions_per_packet": round((i3 - i1) / (p3 - p1), 1) if p3 > p1 else None,
                  "whole_run_per_packet": round(i3 / p3, 1)}))
PY
