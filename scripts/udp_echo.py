#!/usr/bin/env python3
"""A UDP request/response service for UVS test real servers.

Answers every datagram on port 53 (IPv4 and IPv6) with "NAME PAYLOAD", so a
client can check both the content and which real server answered.

Each answer leaves from the address the request was sent to (IP_PKTINFO /
IPV6_PKTINFO), as a UDP service behind direct routing or a tunnel must: the
request is addressed to the VIP on lo, and a plain reply from a wildcard
socket would carry the server's own address and be ignored by the client.
Usage: udp_echo.py NAME [PORT]
"""
import select
import socket
import struct

# <linux/in.h>; Python 3.11 does not export it.
IP_PKTINFO = 8
import sys


def main():
    name = sys.argv[1].encode()
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 53
    s4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s4.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    s4.bind(("0.0.0.0", port))
    s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    s6.bind(("::", port))
    while True:
        ready, _, _ = select.select([s4, s6], [], [])
        for s in ready:
            data, anc, _flags, peer = s.recvmsg(65535, 256)
            reply = []
            for level, kind, cdata in anc:
                if s is s4 and level == socket.IPPROTO_IP and kind == IP_PKTINFO:
                    # struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }
                    dst = cdata[8:12]
                    reply = [(level, kind, struct.pack("i4s4s", 0, dst, b"\0" * 4))]
                elif s is s6 and level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
                    # struct in6_pktinfo { in6_addr addr; unsigned ifindex; }
                    reply = [(level, kind, cdata[:16] + struct.pack("I", 0))]
            s.sendmsg([name + b" " + data], reply, 0, peer)


if __name__ == "__main__":
    main()
