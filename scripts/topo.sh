#!/usr/bin/env bash
# Test topology for UVS in net_tap mode: real Linux clients and real servers
# in network namespaces around a uvsd that owns two TAP ports.
#
#   client ns  <-- tap "<P>c" -->  uvsd  <-- tap "<P>b" -->  bridge ns (br0)  --veth--  rs1..rsN ns
#       \___________________________ veth (router path for DR/TUN replies) ___/
#
# Addresses (only 198.18.0.0/15 and 2001:db8::/32, only inside these namespaces):
#   client segment 198.18.0.0/24, 2001:db8:0:0::/64
#     director 198.18.0.1  2001:db8::1      VIPs 198.18.0.100, 2001:db8::100 (answered by uvsd)
#     clients  198.18.0.2 .. 198.18.0.(1+CLIENTS), 2001:db8::2 ..
#   backend segment 198.18.1.0/24, 2001:db8:1::/64
#     director 198.18.1.1  2001:db8:1::1
#     real servers 198.18.1.11.., 2001:db8:1::11..
#     router (bridge ns) 198.18.1.254, 2001:db8:1::fe
#   router <-> client link 198.18.2.0/24, 2001:db8:2::/64 (client .2, router .1)
#   outside (topo.sh outside): a host beyond the client namespace, which
#     routes for it: link 198.19.0.0/24, 2001:db8:3::/64 (client .1, outside .2)
#
# Usage:
#   topo.sh create  P METHOD [SERVERS] [CLIENTS]   namespaces, bridge, real servers (before uvsd)
#   topo.sh director P                             a namespace P-dir for uvsd (after create, before uvsd)
#   topo.sh attach  P                              move uvsd's taps into place (after uvsd started;
#                                                  from P-dir if it exists)
#   topo.sh outside P                              a host "outside" behind the client namespace
#                                                  (after attach), with the HTTP and UDP servers
#   topo.sh destroy P                              remove everything of prefix P (idempotent)
# METHOD: nat | dr | ipip | gue | gre | fullnat  (how real servers route replies / decapsulate;
#         fullnat: no route beyond their segment)
# P: short prefix (<= 4 chars), so several topologies can coexist.
#
# Real servers run python3's HTTP server on port 80 (serving $P-www with a
# test file) and scripts/udp_echo.py on UDP port 53. For TUN, this kernel has
# no ipip/gre/fou modules, so scripts/tun_decap.py decapsulates in userspace at
# each real server and hands the inner packet to that server's own kernel
# TCP/IP stack through a tun device.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:?usage: topo.sh create|director|attach|destroy PREFIX ...}
P=${2:?prefix}
ns() { ip netns exec "$@"; }

destroy() {
    for n in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${P}-" || true); do
        # kill what runs inside (servers, decap helpers)
        for pid in $(ip netns pids "$n" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
        ip netns del "$n" 2>/dev/null || true
    done
    rm -rf "/tmp/${P}-www" "/tmp/${P}-run"
}

create() {
    local method=${3:?method} servers=${4:-3} clients=${5:-4}
    destroy
    mkdir -p "/tmp/${P}-www" "/tmp/${P}-run"
    echo "$method" > "/tmp/${P}-run/method"
    echo "$servers" > "/tmp/${P}-run/servers"
    echo "$clients" > "/tmp/${P}-run/clients"
    ip netns add "${P}-cli"
    ip netns add "${P}-br"
    ns "${P}-cli" ip link set lo up
    ns "${P}-br" ip link set lo up
    ns "${P}-br" sysctl -qw net.ipv4.ip_forward=1
    ns "${P}-br" sysctl -qw net.ipv6.conf.all.forwarding=1
    ns "${P}-br" ip link add br0 type bridge
    ns "${P}-br" ip link set br0 up
    ns "${P}-br" ip addr add 198.18.1.254/24 dev br0
    ns "${P}-br" ip -6 addr add 2001:db8:1::fe/64 dev br0 nodad

    # router path: bridge ns <-> client ns, used by DR/TUN replies
    ip link add "${P}rt0" type veth peer name "${P}rt1"
    ip link set "${P}rt0" netns "${P}-br"
    ip link set "${P}rt1" netns "${P}-cli"
    ns "${P}-br" ip addr add 198.18.2.1/24 dev "${P}rt0"
    ns "${P}-br" ip -6 addr add 2001:db8:2::1/64 dev "${P}rt0" nodad
    ns "${P}-br" ip link set "${P}rt0" up
    ns "${P}-cli" ip addr add 198.18.2.2/24 dev "${P}rt1"
    ns "${P}-cli" ip -6 addr add 2001:db8:2::2/64 dev "${P}rt1" nodad
    ns "${P}-cli" ip link set "${P}rt1" up
    ns "${P}-br" ip route add 198.18.0.0/24 via 198.18.2.2
    ns "${P}-br" ip -6 route add 2001:db8::/64 via 2001:db8:2::2
    for n in "${P}-cli" "${P}-br"; do
        ns "$n" sysctl -qw net.ipv4.conf.all.rp_filter=0
        ns "$n" sysctl -qw net.ipv4.conf.default.rp_filter=0
    done
    # Small receive buffers on the clients: a rate-limited download
    # (curl --limit-rate) then stays in flight, ESTABLISHED on the director,
    # for as long as the client reads; with Linux's default autotuning the
    # whole 1 MiB blob and the server's FIN pass the director in a moment
    # on a fast machine, and the connection leaves ESTABLISHED long before
    # the download ends.
    ns "${P}-cli" sysctl -qw net.ipv4.tcp_rmem="4096 16384 65536"

    head -c 1048576 /dev/urandom > "/tmp/${P}-www/blob"
    for i in $(seq 1 "$servers"); do
        local n="${P}-rs$i" a4="198.18.1.$((10 + i))" a6="2001:db8:1::$((10 + i))"
        ip netns add "$n"
        ip link add "${P}r${i}a" type veth peer name "${P}r${i}b"
        ip link set "${P}r${i}a" netns "${P}-br"
        ip link set "${P}r${i}b" netns "$n"
        ns "${P}-br" ip link set "${P}r${i}a" master br0 up
        ns "$n" ip link set lo up
        ns "$n" ip link set "${P}r${i}b" name eth0
        ns "$n" ip link set eth0 address "02:00:00:00:01:$((10 + i))"
        ns "$n" ip addr add "$a4/24" dev eth0
        ns "$n" ip -6 addr add "$a6/64" dev eth0 nodad
        ns "$n" ip link set eth0 up
        ns "$n" sysctl -qw net.ipv4.conf.all.rp_filter=0
        ns "$n" sysctl -qw net.ipv4.conf.default.rp_filter=0
        ns "$n" sysctl -qw net.ipv4.conf.eth0.rp_filter=0
        case "$method" in
            nat)
                ns "$n" ip route add default via 198.18.1.1
                ns "$n" ip -6 route add default via 2001:db8:1::1
                ;;
            fullnat)
                # No route beyond the segment: under FULLNAT replies go to
                # the director's local address on this segment.
                ;;
            dr|ipip|gue|gre)
                # The VIP lives on lo; only the director answers ARP/NDP for it.
                ns "$n" sysctl -qw net.ipv4.conf.all.arp_ignore=1
                ns "$n" sysctl -qw net.ipv4.conf.all.arp_announce=2
                ns "$n" sysctl -qw net.ipv4.conf.eth0.arp_ignore=1
                ns "$n" sysctl -qw net.ipv4.conf.eth0.arp_announce=2
                ns "$n" ip addr add 198.18.0.100/32 dev lo
                ns "$n" ip -6 addr add 2001:db8::100/128 dev lo nodad
                ns "$n" ip route add default via 198.18.1.254
                ns "$n" ip -6 route add default via 2001:db8:1::fe
                ;;
            *) echo "unknown method $method" >&2; exit 2 ;;
        esac
        # Each server says who it is, so clients can tell where they landed.
        mkdir -p "/tmp/${P}-www/rs$i"
        cp "/tmp/${P}-www/blob" "/tmp/${P}-www/rs$i/blob"
        echo "rs$i" > "/tmp/${P}-www/rs$i/who"
        ns "$n" python3 "$here/http_server.py" "/tmp/${P}-www/rs$i" \
            > "/tmp/${P}-run/http-rs$i.log" 2>&1 &
        ns "$n" python3 "$here/udp_echo.py" "rs$i" > "/tmp/${P}-run/udp-rs$i.log" 2>&1 &
        case "$method" in
            ipip|gue|gre)
                ns "$n" python3 "$here/tun_decap.py" "$method" \
                    > "/tmp/${P}-run/decap-rs$i.log" 2>&1 &
                ;;
        esac
    done
    # Wait until every server listens.
    for i in $(seq 1 "$servers"); do
        for _ in $(seq 1 100); do
            if ns "${P}-rs$i" bash -c "exec 3<>/dev/tcp/127.0.0.1/80" 2>/dev/null; then break; fi
            sleep 0.1
        done
    done
}

# A namespace for uvsd itself, as the director host's: the kernel
# interfaces of its ports (kernel = ...) and what runs beside uvsd live there.
director() {
    ip netns add "${P}-dir"
    ns "${P}-dir" ip link set lo up
}

attach() {
    local clients from=()
    clients=$(cat "/tmp/${P}-run/clients")
    # uvsd creates its taps in its own namespace.
    if [ -e "/run/netns/${P}-dir" ]; then from=(-n "${P}-dir"); fi
    ip "${from[@]}" link set "${P}c" netns "${P}-cli"
    ip "${from[@]}" link set "${P}b" netns "${P}-br"
    ns "${P}-br" ip link set "${P}b" master br0 up
    ns "${P}-cli" ip link set "${P}c" up
    for i in $(seq 1 "$clients"); do
        ns "${P}-cli" ip addr add "198.18.0.$((1 + i))/24" dev "${P}c"
        ns "${P}-cli" ip -6 addr add "2001:db8::$((1 + i))/64" dev "${P}c" nodad
    done
    ns "${P}-cli" sysctl -qw "net.ipv4.conf.${P}c.rp_filter=0"
    # Everything beyond the client segment is reached through the director.
    ns "${P}-cli" ip route add 198.18.1.0/24 via 198.18.0.1
    ns "${P}-cli" ip -6 route add 2001:db8:1::/64 via 2001:db8::1
}

# A host beyond the client side ("the Internet" of the real servers): the
# client namespace routes between it and the director, and it reaches the
# real servers' segment through the client namespace.
outside() {
    local n="${P}-out"
    ip netns add "$n"
    ns "$n" ip link set lo up
    ip link add "${P}o0" type veth peer name "${P}o1"
    ip link set "${P}o0" netns "${P}-cli"
    ip link set "${P}o1" netns "$n"
    ns "${P}-cli" sysctl -qw net.ipv4.ip_forward=1
    ns "${P}-cli" sysctl -qw net.ipv6.conf.all.forwarding=1
    ns "${P}-cli" ip addr add 198.19.0.1/24 dev "${P}o0"
    ns "${P}-cli" ip -6 addr add 2001:db8:3::1/64 dev "${P}o0" nodad
    ns "${P}-cli" ip link set "${P}o0" up
    ns "$n" ip link set "${P}o1" name eth0
    ns "$n" ip addr add 198.19.0.2/24 dev eth0
    ns "$n" ip -6 addr add 2001:db8:3::2/64 dev eth0 nodad
    ns "$n" ip link set eth0 up
    ns "$n" ip route add default via 198.19.0.1
    ns "$n" ip -6 route add default via 2001:db8:3::1
    for k in all default eth0; do ns "$n" sysctl -qw "net.ipv4.conf.$k.rp_filter=0"; done
    mkdir -p "/tmp/${P}-www/out"
    echo "outside" > "/tmp/${P}-www/out/who"
    cp "/tmp/${P}-www/blob" "/tmp/${P}-www/out/blob"
    ns "$n" python3 "$here/http_server.py" "/tmp/${P}-www/out" > "/tmp/${P}-run/http-out.log" 2>&1 &
    ns "$n" python3 "$here/udp_echo.py" "outside" > "/tmp/${P}-run/udp-out.log" 2>&1 &
    for _ in $(seq 1 100); do
        if ns "$n" bash -c "exec 3<>/dev/tcp/127.0.0.1/80" 2>/dev/null; then break; fi
        sleep 0.1
    done
}

case "$cmd" in
    create) create "$@" ;;
    outside) outside ;;
    director) director ;;
    attach) attach ;;
    destroy) destroy ;;
    *) echo "usage: topo.sh create|director|attach|destroy PREFIX ..." >&2; exit 2 ;;
esac
