#!/usr/bin/env bash
# Tap benchmark (bench/TAP.md): new TCP connections per second and TCP
# throughput through uvsd in net_tap mode, beside the same clients talking
# through dpdk-testpmd io-forwarding on the same kind of taps (the tap
# transport's own limit), interleaved in one run.
#
#   bench/tap/run.sh [-r ROUNDS] [-d WRK_SECONDS] [-t IPERF_SECONDS]
#                    [-c WRK_CONNS_PER_PROCESS] [-m nat|dr|nat,dr] [-o OUTDIR]
#                    [-s nginx|python]
#
# Per method, one topology (scripts/topo.sh, prefix "tb": client ns tb-cli,
# bridge ns tb-br, real servers tb-rs1..3), real servers running nginx on
# port 8080 (one worker each; -s python: topo.sh's python3 http.server on
# port 80 instead) and iperf3 -s on port 5201 (rs1). Then, for
# each round, both forwarders one after the other (order alternates by
# round), each started fresh on lcores 0-1 with one forwarding lcore (1),
# --no-huge -m 512, and its two taps named tbc / tbb moved into tb-cli / tb-br:
#
#   testpmd: --forward-mode=io between the taps; the client reaches the real
#            servers' own addresses on an on-link route through tbc, the
#            servers reach the client on an on-link route through eth0, so
#            ARP and all traffic cross testpmd unchanged (plain L2 wire).
#            The client uses source address 198.18.0.3 here and 198.18.0.2
#            through uvsd: the servers' TIME_WAIT sockets of one forwarder's
#            run then never meet the other's SYNs (whose TCP timestamps have
#            another per-address-pair offset, so PAWS would drop them and the
#            client would retry after 1 s), which made the first rounds of
#            this benchmark measure the previous run's leftovers.
#   uvsd:    VIP 198.18.0.100, TCP 8080 rr over the 3 servers and TCP 5201
#            to rs1, by NAT (-m) or DR (-g), applied from a rules file.
#
# Measured per forwarder and round:
#   conn/s   3 wrk processes (1 thread, C connections each, 'Connection:
#            close', so every request is a new TCP connection) for D seconds,
#            the sum of their Requests/sec; and the client's SYN
#            retransmissions during that time (TcpExtTCPSynRetrans). testpmd: one wrk per real server
#            address; uvsd: all three to the VIP.
#   up/down  iperf3, one stream, T seconds, client -> server (up) and -R
#            (down), received bits/s.
# Writes OUTDIR/results.tsv (one line per forwarder and round, with the
# 1-minute load average at its start), OUTDIR/summary.md (medians, min/max,
# per-round uvsd/testpmd ratios) and raw logs. Needs root. Removes its
# namespaces and processes on exit, also on failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

rounds=5 dur=8 itime=5 conns=8 methods=nat out= server=nginx
while getopts "r:d:t:c:m:o:s:h" o; do
    case $o in
        r) rounds=$OPTARG ;; d) dur=$OPTARG ;; t) itime=$OPTARG ;;
        c) conns=$OPTARG ;; m) methods=$OPTARG ;; o) out=$OPTARG ;; s) server=$OPTARG ;;
        *) sed -n '2,43p' "$0"; exit 2 ;;
    esac
done
case $server in nginx) hport=8080 ;; python) hport=80 ;; *) echo "-s nginx|python" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "run.sh needs root (namespaces, taps)" >&2; exit 1; }
out=${out:-bench/tap/results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
out=$(cd "$out" && pwd)

need=()
for c in wrk iperf3 nginx dpdk-testpmd python3 curl; do command -v "$c" >/dev/null || need+=("$c"); done
if [ ${#need[@]} -gt 0 ]; then
    echo "== installing packages (missing: ${need[*]})"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends wrk iperf3 nginx-light dpdk python3 curl
fi

echo "== building"
cargo build --release --quiet --bin uvsd --bin uvsadm
UVSD=$root/target/release/uvsd
UVSADM=$root/target/release/uvsadm

P=tb
tmp=$(mktemp -d /tmp/tapbench.XXXXXX)
fwd_pid=
stop_fwd() {
    if [ -n "$fwd_pid" ]; then
        kill -TERM "$fwd_pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$fwd_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$fwd_pid" 2>/dev/null || true
        wait "$fwd_pid" 2>/dev/null || true
        fwd_pid=
    fi
    # The taps vanish with their process; wait until the names are free.
    for _ in $(seq 100); do
        ip -n "$P-cli" link show "${P}c" >/dev/null 2>&1 ||
            ip link show "${P}c" >/dev/null 2>&1 || break
        sleep 0.1
    done
}
cleanup() {
    stop_fwd
    "$root/scripts/topo.sh" destroy "$P" || true
    rm -rf "$tmp"
    # testpmd leaves its EAL runtime directory behind (uvsd removes its own).
    rm -rf "/var/run/dpdk/tapbench-tp-$$" "/var/run/dpdk/tapbench-uvs-$$"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

nsx() { ip netns exec "$@"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg | tr ' ' '/'; }
# Other processes busy at the start of a measurement (the machine is shared):
# a 1-second top sample, processes above 20% CPU, as name:percent.
busy_others() {
    top -bn2 -d1 -w 200 | awk '/^top -/ {n++} n == 2 && $1 ~ /^[0-9]+$/ && $9 + 0 > 20 {printf "%s%s:%.0f", sep, $12, $9; sep = ","}'
}

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "kernel: $(uname -r)"
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "mem: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "loadavg at start: $(cat /proc/loadavg)"
    echo "uvsd: $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- src dataplane control || echo '+dirty')"
    echo "dpdk (testpmd, uvsd): $(pkg-config --modversion libdpdk 2>/dev/null || echo '?')"
    echo "wrk: $(dpkg-query -W -f '${Version}' wrk 2>/dev/null || echo '?')  iperf3: $(iperf3 --version | head -1)"
    echo "nginx: $(nginx -v 2>&1)"
    echo "params: rounds=$rounds wrk_seconds=$dur wrk_processes=3 conns_per_process=$conns iperf_seconds=$itime methods=$methods server=$server:$hport"
    echo "eal: -l 0-1 --no-pci --no-huge -m 512 (both), one forwarding lcore (1)"
} | tee "$out/machine.txt"

printf "method\tround\tslot\tforwarder\tloadavg\tconn_per_s\twrk_errors\tsyn_retrans\tup_bps\tdown_bps\tbusy_others\n" > "$out/results.tsv"

# nginx, one worker, on port 8080 in each real server; iperf3 -s in rs1.
start_servers() {
    [ "$server" = nginx ] && for i in 1 2 3; do
        local d=$tmp/nginx-rs$i
        mkdir -p "$d"
        cat > "$d/nginx.conf" <<EOF
user root;
worker_processes 1;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_timeout 0;
    server {
        listen 8080 backlog=4096 reuseport;
        listen [::]:8080 backlog=4096;
        root /tmp/$P-www/rs$i;
    }
}
EOF
        nsx "$P-rs$i" nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf" >"$d/out.log" 2>&1 &
    done
    nsx "$P-rs1" iperf3 -s -p 5201 >"$tmp/iperf3-s.log" 2>&1 &
    for i in 1 2 3; do
        for _ in $(seq 100); do
            nsx "$P-rs$i" bash -c "exec 3<>/dev/tcp/127.0.0.1/$hport" 2>/dev/null && break
            sleep 0.1
        done
    done
    for _ in $(seq 100); do
        nsx "$P-rs1" bash -c "exec 3<>/dev/tcp/127.0.0.1/5201" 2>/dev/null && break
        sleep 0.1
    done
    # Many short connections from one client address.
    nsx "$P-cli" sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
    nsx "$P-cli" sysctl -qw net.ipv4.tcp_tw_reuse=1
}

start_testpmd() {
    local log=$1
    dpdk-testpmd -l 0-1 --no-pci --no-huge -m 512 --file-prefix="tapbench-tp-$$" \
        --vdev "net_tap0,iface=${P}c" --vdev "net_tap1,iface=${P}b" -- \
        --forward-mode=io --nb-cores=1 --total-num-mbufs=16384 \
        --stats-period=3600 >"$log" 2>&1 </dev/null &
    fwd_pid=$!
    for _ in $(seq 200); do
        grep -qi "start packet forwarding" "$log" 2>/dev/null && ip link show "${P}b" >/dev/null 2>&1 && break
        kill -0 "$fwd_pid" 2>/dev/null || break
        sleep 0.1
    done
    grep -qi "start packet forwarding" "$log" || { cat "$log"; echo "testpmd did not start" >&2; return 1; }
    "$root/scripts/topo.sh" attach "$P"
    # A plain wire: on-link routes both ways through the taps.
    nsx "$P-cli" ip route replace 198.18.1.0/24 dev "${P}c" src 198.18.0.3
    for i in 1 2 3; do nsx "$P-rs$i" ip route replace 198.18.0.0/24 dev eth0; done
}

start_uvsd() {
    local log=$1 method=$2 flag
    case $method in nat) flag=-m ;; dr) flag=-g ;; esac
    {
        echo "-A -t 198.18.0.100:$hport -s rr"
        for i in 1 2 3; do echo "-a -t 198.18.0.100:$hport -r 198.18.1.1$i:$hport $flag -w 1"; done
        echo "-A -t 198.18.0.100:5201 -s rr"
        echo "-a -t 198.18.0.100:5201 -r 198.18.1.11:5201 $flag -w 1"
    } > "$tmp/rules"
    cat > "$tmp/uvsd.toml" <<EOF
[eal]
args = ["-l", "0-1", "--no-pci", "--no-huge", "-m", "512", "--file-prefix=tapbench-uvs-$$"]
[workers]
lcores = [1]
conn_capacity = 262144
[control]
socket = "$tmp/uvsadm.sock"
rules = "$tmp/rules"
[[port]]
name = "client"
device = "net_tap0,iface=${P}c"
mac = "02:00:00:00:00:01"
addresses = ["198.18.0.1/24"]
[[port]]
name = "server"
device = "net_tap1,iface=${P}b"
mac = "02:00:00:00:00:02"
addresses = ["198.18.1.1/24"]
EOF
    "$UVSD" --config "$tmp/uvsd.toml" >"$log" 2>&1 &
    fwd_pid=$!
    for _ in $(seq 300); do
        grep -q "uvsd: ready" "$log" && break
        kill -0 "$fwd_pid" 2>/dev/null || break
        sleep 0.1
    done
    grep -q "uvsd: ready" "$log" || { cat "$log"; echo "uvsd did not start" >&2; return 1; }
    "$root/scripts/topo.sh" attach "$P"
    for i in 1 2 3; do nsx "$P-rs$i" ip route del 198.18.0.0/24 dev eth0 2>/dev/null || true; done
}

# The client namespace's count of retransmitted SYNs.
syn_retrans() {
    nsx "$P-cli" cat /proc/net/netstat | awk '/^TcpExt:/ {
        if (!h) { for (i = 1; i <= NF; i++) k[i] = $i; h = 1 }
        else for (i = 1; i <= NF; i++) if (k[i] == "TCPSynRetrans") print $i }'
}

# One measurement: wrk then iperf3 up and down. Prints "conn/s errors syn_retrans up down".
measure() {
    local tag=$1; shift
    local targets=("$@") ok=1 t
    for t in "${targets[@]}"; do
        # warm-up and check: the path answers (ARP, neighbour, service)
        nsx "$P-cli" curl -s -f -m 3 -o /dev/null "http://$t:$hport/who" || ok=0
    done
    [ $ok = 1 ] || { echo "$tag: path check failed" >&2; echo "NA NA NA NA NA"; return; }
    local pids=() k=0 syn0
    syn0=$(syn_retrans)
    for t in "${targets[@]}"; do
        k=$((k + 1))
        nsx "$P-cli" wrk -t1 -c"$conns" -d"${dur}s" --timeout 2s -H 'Connection: close' \
            "http://$t:$hport/who" >"$out/$tag.wrk$k.txt" 2>&1 &
        pids+=($!)
    done
    wait "${pids[@]}" || true
    local rps errs syn
    syn=$(($(syn_retrans) - syn0))
    rps=$(cat "$out/$tag".wrk*.txt | awk '/^Requests\/sec:/ {s += $2} END {printf "%.0f", s}')
    errs=$(cat "$out/$tag".wrk*.txt | awk '/Socket errors:/ {gsub(",",""); s += $4 + $6 + $8 + $10}
        /Non-2xx/ {s += $NF} END {print s + 0}')
    sleep 1
    local isrv=${targets[0]}
    nsx "$P-cli" iperf3 -c "$isrv" -p 5201 -t "$itime" -J >"$out/$tag.up.json" 2>&1 || true
    sleep 1
    nsx "$P-cli" iperf3 -c "$isrv" -p 5201 -t "$itime" -R -J >"$out/$tag.down.json" 2>&1 || true
    local up down
    up=$(python3 -c 'import json,sys; print("%.0f" % json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"])' "$out/$tag.up.json" 2>/dev/null || echo NA)
    down=$(python3 -c 'import json,sys; print("%.0f" % json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"])' "$out/$tag.down.json" 2>/dev/null || echo NA)
    echo "$rps $errs $syn $up $down"
}

for method in ${methods//,/ }; do
    case $method in nat|dr) ;; *) echo "unknown method $method" >&2; exit 2 ;; esac
    echo "== topology for $method"
    # two client addresses: 198.18.0.2 (uvsd) and 198.18.0.3 (testpmd)
    "$root/scripts/topo.sh" create "$P" "$method" 3 2
    start_servers
    for r in $(seq 1 "$rounds"); do
        if [ $((r % 2)) = 1 ]; then order="testpmd uvsd"; else order="uvsd testpmd"; fi
        slot=0
        for f in $order; do
            slot=$((slot + 1))
            tag="$method-r$r-$f"
            la=$(loadavg)
            others=$(busy_others)
            if [ "$f" = testpmd ]; then
                start_testpmd "$out/$tag.log"
                res=$(measure "$tag" 198.18.1.11 198.18.1.12 198.18.1.13)
            else
                start_uvsd "$out/$tag.log" "$method"
                res=$(measure "$tag" 198.18.0.100 198.18.0.100 198.18.0.100)
                UVS_SOCKET=$tmp/uvsadm.sock "$UVSADM" -L -n --stats >"$out/$tag.stats.txt" 2>&1 || true
            fi
            stop_fwd
            read -r rps errs syn up down <<<"$res"
            printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$method" "$r" "$slot" "$f" "$la" \
                "$rps" "$errs" "$syn" "$up" "$down" "${others:--}" >> "$out/results.tsv"
            printf "%-4s round %d %-8s load %-15s conn/s %-7s errors %-4s synretr %-5s up %-11s down %-11s busy: %s\n" \
                "$method" "$r" "$f" "$la" "$rps" "$errs" "$syn" "$up" "$down" "${others:--}"
        done
    done
    # next method: fresh topology
    "$root/scripts/topo.sh" destroy "$P"
done

echo "loadavg at end: $(cat /proc/loadavg)" >> "$out/machine.txt"
python3 "$root/bench/tap/summarize.py" "$out/results.tsv" | tee "$out/summary.md"
echo "== results in $out"
