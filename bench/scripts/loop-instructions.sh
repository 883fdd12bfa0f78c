#!/usr/bin/env bash
# Instructions per packet of uvsd's worker pipeline (Worker::poll: the
# stack, the load-balancing stage, the ring port's rx/tx), counted by
# callgrind in uvs-loop: repeatable on a shared machine, unlike time.
#
#   bench/scripts/loop-instructions.sh [uvs-loop options]
#   e.g. bench/scripts/loop-instructions.sh --method dr --flows 1000
#
# UVS_LOOP=path counts that binary instead of building the worktree's (to
# compare a saved "before" build with the current one).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${UVS_LOOP:-$root/target/release/uvs-loop}
[ -n "${UVS_LOOP:-}" ] || (cd "$root" && cargo build --release -q -p uvs-pktgen --bin uvs-loop)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
valgrind --tool=callgrind --callgrind-out-file="$out/cg" --toggle-collect='*Worker*poll*' \
    "$bin" --rounds 1 --duration 1 --warmup 0.2 "$@" \
    >"$out/stdout" 2>"$out/stderr" || { cat "$out/stderr" >&2; exit 1; }
ir=$(callgrind_annotate "$out/cg" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
python3 - "$ir" "$out/stdout" "$*" <<'PY'
import json, sys
ir = int(sys.argv[1])
s = [json.loads(l) for l in open(sys.argv[2]) if '"summary"' in l][-1]
n = s["uvsd_total_packets"]
print(json.dumps({"args": sys.argv[3], "instructions": ir, "packets": n,
                  "instructions_per_packet": round(ir / n, 1)}))
PY
