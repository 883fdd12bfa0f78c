#!/usr/bin/env bash
# ipset restore speed against a running uvsd (bench/SETS.md): uvsd on one
# net_null port (one worker polling), and `uvsset restore < FILE` of a
# generated hash:net blocklist, timed from the shell as an operator runs it.
#
#   flock /tmp/uvs-e2e.lock bench/scripts/sets.sh [ENTRIES] [RUNS]
#
# ENTRIES (default 1000000) distinct IPv4 networks in 198.18.0.0/15 and
# beyond (/32, /24 and /16, plus a /28 nomatch every 1000 lines). RUNS
# (default 3): each run restores the file into a fresh set `bl<run>`.
# UVSD / UVSSET select the binaries (default target/release/, built if
# missing).

source "$(dirname "$0")/common.sh"

ENTRIES=${1:-1000000}
RUNS=${2:-3}
UVSD=${UVSD:-$BENCH_ROOT/target/release/uvsd}
UVSSET=${UVSSET:-$BENCH_ROOT/target/release/uvsset}
if [[ ! -x $UVSD || ! -x $UVSSET ]]; then
    bench_log "building uvsd and uvsset (release)"
    (cd "$BENCH_ROOT" && cargo build --release -q --bin uvsd --bin uvsset) >&2
fi
bench_setup

bench_start_null_uvsd "$UVSD"
export UVS_SOCKET="$BENCH_WORK/uvsadm.sock"

# The blocklist: one line in three each of /32 (10.0.0.0/8), /24 (from
# 20.0.0.0) and /20 (from 64.0.0.0), all distinct, and a /28 nomatch
# carved out of a /20 every 1000 lines.
gen() {
    awk -v n="$ENTRIES" -v set="$1" '
    function ip(a) { return sprintf("%d.%d.%d.%d", int(a/16777216)%256, int(a/65536)%256, int(a/256)%256, a%256) }
    BEGIN {
        printf "create %s hash:net family inet hashsize 1048576 maxelem %d\n", set, n + n / 1000 + 16
        for (i = 0; i < n; i++) {
            k = i % 3; j = int(i / 3)
            if (k == 0) printf "add %s %s\n", set, ip(167772160 + j)
            else if (k == 1) printf "add %s %s/24\n", set, ip(335544320 + j * 256)
            else printf "add %s %s/20\n", set, ip(1073741824 + j * 4096)
            if (i % 1000 == 999) printf "add %s %s/28 nomatch\n", set, ip(1073741824 + j * 4096 + 16)
        }
    }'
}

for r in $(seq 1 "$RUNS"); do
    gen "bl$r" >"$BENCH_WORK/bl$r.txt"
    lines=$(wc -l <"$BENCH_WORK/bl$r.txt")
    bytes=$(wc -c <"$BENCH_WORK/bl$r.txt")
    start=$(date +%s.%N)
    "$UVSSET" restore <"$BENCH_WORK/bl$r.txt"
    end=$(date +%s.%N)
    entries=$("$UVSSET" -t list "bl$r" | awk -F': ' '/^Number of entries/ {print $2}')
    printf 'run %d: %d lines (%d bytes) restored in %.3f s; set holds %s entries\n' \
        "$r" "$lines" "$bytes" "$(echo "$end - $start" | bc)" "$entries"
done
start=$(date +%s.%N)
"$UVSSET" save bl1 | wc -l >/dev/null
end=$(date +%s.%N)
printf 'save bl1: %.3f s\n' "$(echo "$end - $start" | bc)"
start=$(date +%s.%N)
"$UVSSET" -q test bl1 64.0.0.77 || true
end=$(date +%s.%N)
printf 'one test round trip: %.3f s\n' "$(echo "$end - $start" | bc)"
grep -E "VmRSS|VmHWM" "/proc/$BENCH_DUT_PID/status"
