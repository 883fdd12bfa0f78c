#!/usr/bin/env python3
"""A UDP request/response service for UVS test real servers.

Answers every datagram on port 53 (IPv4 and IPv6) with "NAME PAYLOAD", so a
client can check both the content and which real server answered.
Usage: udp_echo.py NAME [PORT]
"""
import socket
import sys


def main():
    name = sys.argv[1].encode()
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 53
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    while True:
        data, peer = s.recvfrom(65535)
        s.sendto(name + b" " + data, peer)


if __name__ == "__main__":
    main()
