#!/usr/bin/env python3
"""A real HTTP server for UVS test real servers: serves DIR on port 80, IPv4 and IPv6.

Usage: http_server.py DIR [PORT]
"""
import functools
import http.server
import socket
import sys


class DualStack(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    request_queue_size = 256

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def main():
    root = sys.argv[1]
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 80
    handler = functools.partial(Quiet, directory=root)
    DualStack(("::", port), handler).serve_forever()


if __name__ == "__main__":
    main()
