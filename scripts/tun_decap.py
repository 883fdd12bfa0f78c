#!/usr/bin/env python3
"""Userspace tunnel endpoint for UVS TUN tests at a real server.

The test kernel has no ipip, gre or fou modules, so a real server cannot
decapsulate in the kernel. This helper receives the director's tunnel
packets (IPIP/IPv6-in-IP via raw sockets, GRE via a raw socket, GUE via a UDP
socket), strips the outer headers exactly as the kernel would, and writes
the inner packet to a tun device, so the real server's own kernel TCP/IP
stack receives it (the VIP is on lo) and answers the client directly.

Usage: tun_decap.py ipip|gre|gue [GUE_PORT]
"""
import fcntl
import os
import select
import socket
import struct
import subprocess
import sys

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    subprocess.run(["ip", "link", "set", name, "up"], check=True)
    subprocess.run(["sysctl", "-qw", f"net.ipv4.conf.{name}.rp_filter=0"], check=True)
    return fd


def strip_ipv4(pkt):
    """Raw IPv4 sockets deliver the outer header too; IPv6 ones do not."""
    ihl = (pkt[0] & 0x0F) * 4
    return pkt[ihl:]


def gre_payload(g):
    if len(g) < 4:
        return None
    flags = struct.unpack("!H", g[:2])[0]
    off = 4
    if flags & 0x8000:  # checksum present
        off += 4
    if flags & 0x2000:  # key present
        off += 4
    if flags & 0x1000:  # sequence present
        off += 4
    return g[off:]


def gue_payload(u):
    if len(u) < 4 or (u[0] >> 6) != 0:
        return None
    hlen = (u[0] & 0x1F) * 4
    return u[4 + hlen:]


def main():
    kind = sys.argv[1]
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 6080
    tun = open_tun("decap0")
    socks = []  # (socket, is_ipv4_raw, decoder)
    if kind == "ipip":
        for proto in (4, 41):  # inner IPv4, inner IPv6
            socks.append((socket.socket(socket.AF_INET, socket.SOCK_RAW, proto), True, lambda p: p))
            socks.append((socket.socket(socket.AF_INET6, socket.SOCK_RAW, proto), False, lambda p: p))
    elif kind == "gre":
        socks.append((socket.socket(socket.AF_INET, socket.SOCK_RAW, 47), True, gre_payload))
        socks.append((socket.socket(socket.AF_INET6, socket.SOCK_RAW, 47), False, gre_payload))
    elif kind == "gue":
        u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        u.bind(("::", port))
        socks.append((u, False, gue_payload))
    else:
        sys.exit(f"unknown tunnel type {kind}")
    by_fd = {s.fileno(): (s, v4, dec) for s, v4, dec in socks}
    while True:
        ready, _, _ = select.select(list(by_fd), [], [])
        for fd in ready:
            s, v4raw, dec = by_fd[fd]
            pkt = s.recv(65535)
            if v4raw:
                pkt = strip_ipv4(pkt)
            inner = dec(pkt)
            if inner:
                os.write(tun, inner)


if __name__ == "__main__":
    main()
