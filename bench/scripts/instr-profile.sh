#!/usr/bin/env bash
# Instructions per packet of each machine instruction of the worker's
# packet loop (`dataplane::worker::input_burst`), with the source line it
# comes from: callgrind with --dump-instr=yes over uvs-loop, the counts
# laid over `objdump -d -l` of the same binary.
#
#   bench/scripts/instr-profile.sh OUT [uvs-loop options]
#   e.g. UVS_LOOP=/tmp/uvs-loop bench/scripts/instr-profile.sh /tmp/nat --method nat --proto udp --flows 1000
#
# Why: loop-instructions.sh gives the total and callgrind_annotate the
# cost per source line, but the lane is one function where inlined code
# is charged to the file it came from; what it does twice, what it keeps
# on the stack (spills, a temporary copied) and where a check the parser
# made is made again show only per instruction.
#
# Writes OUT.hot (every instruction run at least half a time per packet:
# count per packet, address, instruction, source line, in address order)
# and prints the per-packet cost of each source file, the whole function's
# and how much of it reads or writes the stack frame. FN=<name> profiles
# another function (its demangled name, e.g. dataplane::worker::input_burst_fronted
# for two workers). UVS_LOOP=path counts that binary instead of building
# the worktree's. One run of 2 s (--duration), so the start-up is
# included: use it to see where instructions go, loop-instructions.sh for
# the figure.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:?usage: instr-profile.sh OUT [uvs-loop options]}
shift
bin=${UVS_LOOP:-$root/target/release/uvs-loop}
fn=${FN:-dataplane::worker::input_burst}
[ -n "${UVS_LOOP:-}" ] || (cd "$root" && cargo build --release -q -p uvs-pktgen --bin uvs-loop)
valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file="$out.cg" \
    --toggle-collect='*Worker*poll*' \
    "$bin" --rounds 1 --duration 2 --warmup 0.2 "$@" >"$out.stdout" 2>"$out.stderr" ||
    { cat "$out.stderr" >&2; exit 1; }
read -r start size < <(nm -S -C "$bin" | awk -v f="$fn" '$4 == f && NF == 4 {print $1, $2}')
[ -n "${start:-}" ] || { echo "no function $fn in $bin" >&2; exit 1; }
stop=$(printf '%x' $((0x$start + 0x$size)))
objdump -d --no-show-raw-insn -l -C --start-address="0x$start" --stop-address="0x$stop" "$bin" >"$out.asm"
python3 - "$out" "$fn" <<'PY'
import collections, json, re, sys
out, fn = sys.argv[1], sys.argv[2]
packets = [json.loads(l) for l in open(f"{out}.stdout") if '"summary"' in l][-1]["uvsd_total_packets"]
# Self cost per instruction address of `fn`: callgrind's "positions: instr
# line" format, with names defined once (fn=/cfn=) and addresses written
# relative to the line before (+n, -n, *); a call's line (after calls=)
# is its inclusive cost, not the caller's own.
names, cost, cur, last, after_call = {}, collections.Counter(), None, 0, False
for line in open(f"{out}.cg"):
    line = line.rstrip("\n")
    m = re.match(r"(c?fn)=\((\d+)\)(?: (.*))?", line)
    if m:
        if m.group(3):
            names[m.group(2)] = m.group(3)
        if m.group(1) == "fn":
            cur = names.get(m.group(2), "")
        continue
    if line.startswith("calls="):
        after_call = True
        continue
    if not line or line[0] not in "0123456789+-*":
        continue
    parts = line.split()
    a = parts[0]
    if a.startswith("0x"):
        addr = int(a, 16)
    elif a[0] in "+-":
        d = int(a[1:], 16) if a[1:].startswith("0x") else int(a[1:])
        addr = last + d if a[0] == "+" else last - d
    elif a == "*":
        addr = last
    else:
        addr = int(a)
    last = addr
    if after_call:
        after_call = False
        continue
    if cur == fn and len(parts) >= 3:
        cost[addr] += int(parts[2])
by_file, hot, src, total, frame = collections.Counter(), [], "", 0.0, 0.0
for line in open(f"{out}.asm"):
    line = line.rstrip()
    m = re.match(r"\s*([0-9a-f]+):\s+(.*)", line)
    if m:
        c = cost.get(int(m.group(1), 16), 0) / packets
        by_file[src.split(":")[0]] += c
        total += c
        if "(%rsp)" in m.group(2):
            frame += c
        if c >= 0.5:
            hot.append(f"{c:6.2f} {m.group(1)} {m.group(2)[:60]:60s} {src}")
    elif line.startswith("/"):
        src = line.split("/")[-1] if "/rustc/" in line else re.sub(r"^.*?/(dataplane|model|bench)/", r"\1/", line)
open(f"{out}.hot", "w").write("\n".join(hot) + "\n")
for f, c in by_file.most_common(30):
    print(f"{c:7.1f}  {f}")
print(f"{total:7.1f}  {fn} per packet ({packets} packets), of which {frame:.1f} read or write the stack frame")
PY
