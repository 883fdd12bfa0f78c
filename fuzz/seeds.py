#!/usr/bin/env python3
"""Writes the seed inputs of the grammar, keepalived and control fuzz
corpora under DIR/<target>/ (scripts/fuzz --seed runs it; the wire and
pipeline seeds come from a dataplane test, whose frame builders they use).

Seeds are meaningful inputs, so the fuzzer starts deep in each parser:
every ipvsadm command form, the repo's -R files, keepalived.conf examples
from the checker's tests, and control-socket sessions as uvsadm frames them.
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
