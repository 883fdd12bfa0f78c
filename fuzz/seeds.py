#!/usr/bin/env python3
"""Writes the seed inputs of the grammar, keepalived, control, iptables and
ipset fuzz corpora under DIR/<target>/ (scripts/fuzz --seed runs it; the wire and
pipeline seeds come from a dataplane test, whose frame builders they use).

Seeds are meaningful inputs, so the fuzzer starts deep in each parser:
every ipvsadm command form, the repo's -R files, keepalived.conf examples
from the checker's tests, control-socket sessions as uvsadm frames them,
and the iptables rules and ipset commands directors use.
"""
import ast
import json
import pathlib
import re
import struct
import sys

root = pathlib.Path(__file__).resolve().parent.parent
out = pathlib.Path(sys.argv[1])

COMMANDS = [
    "-A -t 198.18.0.100:80 -s rr",
    "-A -u 198.18.0.100:53 -s wlc -p 300 -M 255.255.255.0",
    "-A --sctp-service 198.18.0.100:80 -s sh -b sh-port,sh-fallback",
    "-A -f 7 -s mh -b mh-port",
    "-A -6 -f 8 -s lc",
    "-A -t [2001:db8::100]:80 -s wrr -o",
    "-E -t 198.18.0.100:80 -s sed",
    "-D -t 198.18.0.100:80",
    "-a -t 198.18.0.100:80 -r 198.18.1.11:80 -m -w 3 -x 100 -y 10",
    "-a -t 198.18.0.100:80 -r 198.18.1.12 -g",
    "-a -t 198.18.0.100:80 -r 198.18.1.13 -i --tun-type gue --tun-port 6080 --tun-nocsum",
    "-a -t 198.18.0.100:80 -r 198.18.1.14 -i --tun-type gre --tun-csum",
    "-a -t [2001:db8::100]:80 -r [2001:db8:1::11]:80 -m",
    "-e -t 198.18.0.100:80 -r 198.18.1.11:80 -m -w 0",
    "-d -t 198.18.0.100:80 -r 198.18.1.11:80",
    "-C",
    "-Z -t 198.18.0.100:80",
    "-L -n",
    "-L -n -c",
    "-l -n --stats --exact",
    "-L -n --rate -t 198.18.0.100:80",
    "-L -n --thresholds --persistent-conn --sort",
    "-L --timeout",
    "-L --daemon",
    "-S -n",
    "--set 900 120 300",
    "--start-daemon master --mcast-interface eth0 --syncid 3",
    "--start-daemon backup --mcast-group 224.0.0.81 --mcast-port 8848 --mcast-ttl 1",
    "--stop-daemon master",
    "-h",
    "-v",
]


def write(target, name, data):
    d = out / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


# grammar: first byte even = a command line (words split at blanks), odd =
# -R input.
for i, c in enumerate(COMMANDS):
    write("grammar", f"cmd-{i:02}", b"\0" + c.encode())
for f in sorted((root / "configs").glob("*.rules")):
    write("grammar", f"restore-{f.stem}", b"\1" + f.read_bytes())
write("grammar", "restore-all", b"\1" + "\n".join(COMMANDS[:16]).encode())

# keepalived: the checker's sample configuration and the ones its
# agreement test feeds both keepalived and uvs-keepalived.
tests = (root / "checker/src/conf/tests.rs").read_text()
m = re.search(r'const SAMPLE: &str = r#"(.*?)"#;', tests, re.S)
write("keepalived", "sample", m.group(1).encode())
agree = (root / "checker/tests/agree_with_keepalived.rs").read_text()
for i, lit in enumerate(re.findall(r'\("[^"]*", ("virtual_server(?:[^"\\]|\\.)*")', agree)):
    write("keepalived", f"agree-{i:02}", ast.literal_eval(lit).encode())


# control: sessions as uvsadm writes them (4-byte big-endian length, JSON).
def frame(argv, stdin=None):
    body = json.dumps({"argv": argv, "stdin": stdin}).encode()
    return struct.pack(">I", len(body)) + body


demo = (root / "configs/demo.rules").read_text()
write("control", "session",
      b"".join(frame(c.split()) for c in COMMANDS[:3] + COMMANDS[8:12] + ["-L -n", "-S -n"]))
write("control", "restore", frame(["-R"], demo) + frame(["-L", "-n", "--stats"]))
write("control", "refused", frame(["-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1"]) + frame(["-Q"]))
write("control", "response", b"".join(
    struct.pack(">I", len(b)) + b for b in [
        json.dumps({"code": 0, "stdout": "IP Virtual Server version 1.2.1\n", "stderr": ""}).encode(),
        json.dumps({"code": 2, "stdout": "", "stderr": "Service not defined\n"}).encode(),
    ]))

# iptables: first byte bit 0-1 = 3 restore input, 2 iptables-save options,
# else an iptables command line (words split at blanks); bit 2 = IPv6.
# The rules directors write (wave2.md): marks for fwmark services, the
# filter chain in front of VIPs, SNAT and MASQUERADE for routed servers.
IPTABLES = [
    "-t mangle -A PREROUTING -d 198.18.0.100/32 -p tcp -m multiport --dports 80,443 -j MARK --set-mark 0x7",
    "-t mangle -A PREROUTING -p udp --dport 53 -m set --match-set vips dst -j MARK --set-xmark 0x8/0xff",
    "-A INPUT -m set --match-set blocklist src -j DROP",
    "-A INPUT -p tcp --dport 22 -m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT",
    "-A INPUT -s 198.18.9.0/24 -p tcp --syn -j REJECT --reject-with tcp-reset",
    "-A FORWARD -i eth0 -o eth1 -m comment --comment \"servers out\" -j ACCEPT",
    "-I INPUT 1 -p icmp --icmp-type echo-request -j ACCEPT",
    "-t nat -A POSTROUTING -s 198.18.1.0/24 -o eth0 -j MASQUERADE",
    "-t nat -A POSTROUTING -s 198.18.1.0/24 -j SNAT --to-source 198.18.0.10-198.18.0.12:1024-65535",
    "-t nat -A PREROUTING -m addrtype --dst-type LOCAL -j RETURN",
    "-N kube-services",
    "-E web www",
    "-P FORWARD DROP",
    "-D INPUT 1",
    "-R INPUT 1 -p udp ! --dport 53 -j DROP",
    "-F",
    "-Z INPUT",
    "-L -n -v --line-numbers",
    "-S",
    "-C INPUT -m set --match-set blocklist src -j DROP",
]
for i, c in enumerate(IPTABLES):
    write("iptables", f"cmd-{i:02}", b"\0" + c.encode())
write("iptables", "cmd-v6", b"\4" + b"-A INPUT -s 2001:db8::/32 -p tcp --dport 80 -j ACCEPT")
write("iptables", "save", b"\2" + b"-c -t nat")
write("iptables", "restore", b"\3" + b"""*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [3:180]
:OUTPUT ACCEPT [0:0]
:web - [0:0]
[5:300] -A INPUT -p tcp -m tcp --dport 80 -j web
-A web -m set --match-set blocklist src -j DROP
-A web -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -s 198.18.1.0/24 -j MASQUERADE
COMMIT
""")

# ipset: first byte even = a command line, odd = restore input; the
# store already holds hash:net n, hash:ip,port,net p, bitmap:port b and
# list:set l (see control::ipset::fuzz_one).
IPSET = [
    "create vips hash:ip family inet hashsize 1024 maxelem 65536 timeout 600 counters comment",
    "create v6 hash:ip family inet6",
    "create ports bitmap:port range 0-65535",
    "create nets hash:net,iface",
    "create pairs hash:ip,port",
    "create marks hash:ip,mark markmask 0xff",
    "add n 198.18.5.0/24 timeout 30 comment \"lab\"",
    "add n 198.18.6.0/24 nomatch",
    "add p 198.18.0.1,tcp:80,198.18.1.0/24",
    "add p 198.18.0.1,udp:53-55,198.18.1.0/24",
    "add b 80-90",
    "add l n before n",
    "del n 198.18.0.0/16",
    "test n 198.18.3.4",
    "list n",
    "list -t",
    "list -n",
    "save",
    "flush n",
    "swap n l",
    "rename b ports2",
    "destroy b",
    "-exist add n 198.18.0.0/16",
    "-q test b 81",
]
for i, c in enumerate(IPSET):
    write("ipset", f"cmd-{i:02}", b"\0" + c.encode())
write("ipset", "restore", b"\1" + b"""create blocklist hash:net family inet hashsize 1024 maxelem 1048576
add blocklist 198.18.128.0/17
add blocklist 198.19.0.0/24 nomatch
create vips hash:ip,port family inet hashsize 1024 maxelem 65536 counters
add vips 198.18.0.100,tcp:80 packets 0 bytes 0
create all list:set size 8
add all blocklist
""")
