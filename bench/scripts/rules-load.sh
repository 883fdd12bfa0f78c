#!/usr/bin/env bash
# Established NAT instructions per packet with and without a realistic
# rule load (bench/RULES.md): a 10,000-entry hash:ip set, a 1,000,000-entry
# hash:net blocklist (/32 and /24 entries) and 100 rules, loaded into
# uvs-loop through the daemon's own ipset and iptables-restore grammars.
# The benchmark's clients (198.18.128.0/17) are in neither set, so every
# walk pays for both lookups and goes through the rules to the end; with
# the flow cache, only a flow's first packet walks (while the flows fit
# the cache: bench/RULES.md).
#
#   bench/scripts/rules-load.sh [uvs-loop options]   (default: --flows 1000)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 - "$dir" <<'PY'
import sys
d = sys.argv[1]
with open(f"{d}/sets", "w") as f:
    f.write("create allow10k hash:ip family inet hashsize 16384 maxelem 65536\n")
    for i in range(10000):
        f.write(f"add allow10k 198.19.{i // 256}.{i % 256}\n")
    # A million distinct entries cannot fit in 198.18.0.0/15, so the
    # blocklist holds other addresses, as a real one does; nothing is ever
    # sent to them (the generator's clients are 198.18.128.0/17).
    f.write("create block1m hash:net family inet hashsize 1048576 maxelem 2000000\n")
    for i in range(500000):
        f.write(f"add block1m 10.{i // 65536}.{i // 256 % 256}.{i % 256}\n")
    for i in range(500000):
        f.write(f"add block1m {20 + i // 65536}.{i // 256 % 256}.{i % 256}.0/24\n")
with open(f"{d}/rules", "w") as f:
    f.write("*mangle\n-A PREROUTING -m set --match-set allow10k src -j MARK --set-mark 0x7\nCOMMIT\n")
    f.write("*filter\n-A INPUT -m set --match-set block1m src -j DROP\n")
    for p in range(10000, 10098):
        f.write(f"-A INPUT -p tcp -m tcp --dport {p} -j DROP\n")
    f.write("COMMIT\n")
# The same 100 rules with prefixes in place of the two sets: the rule
# engine's own cost.
with open(f"{d}/rules-nosets", "w") as f:
    f.write("*mangle\n-A PREROUTING -s 198.19.0.0/18 -j MARK --set-mark 0x7\nCOMMIT\n")
    f.write("*filter\n-A INPUT -s 198.19.64.0/18 -j DROP\n")
    for p in range(10000, 10098):
        f.write(f"-A INPUT -p tcp -m tcp --dport {p} -j DROP\n")
    f.write("COMMIT\n")
PY
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--flows 1000)
echo "== no sets, no rules"
"$here/loop-instructions.sh" "${args[@]}"
echo "== 100 rules, no sets"
"$here/loop-instructions.sh" "${args[@]}" --iptables-restore "$dir/rules-nosets"
echo "== 10k + 1M set entries, 100 rules"
"$here/loop-instructions.sh" "${args[@]}" --ipset-restore "$dir/sets" --iptables-restore "$dir/rules"
