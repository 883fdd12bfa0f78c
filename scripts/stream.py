#!/usr/bin/env python3
"""Long TCP downloads of a known pattern, for failover tests.

  stream.py serve PORT
      Serve on 0.0.0.0:PORT. A client sends "SEED SIZE\\n"; the server
      streams SIZE bytes of the pattern from offset SEED, CHUNK bytes every
      PACE seconds (so a download lasts SIZE / CHUNK * PACE seconds), then
      closes.

  stream.py fetch SIZE COUNT ADDR:PORT [ADDR:PORT ...]
      COUNT concurrent downloads of SIZE bytes from each ADDR:PORT. Prints
      "streaming" once every download received its first bytes, then one
      line per address when all ended:
          ADDR:PORT ok=N bad=N failed=N of=COUNT max_stall=SECONDS
      ok: the sha256 of what arrived is the pattern's; bad: it ended with
      other bytes (or fewer); failed: the connection broke. max_stall is
      the longest time any download waited between two reads.

  stream.py probe ADDR:PORT TIMEOUT
      Tries a new 64-byte download every 100 ms until one succeeds;
      prints the seconds it took. Exit status 1 after TIMEOUT seconds.

The pattern byte at offset o of seed s is (s + o) % 251.
"""
import asyncio
import hashlib
import sys
import time

CHUNK = 8192
PACE = 0.2
BASE = bytes(i % 251 for i in range(251 + CHUNK + 251))


def piece(seed, offset, n):
    start = (seed + offset) % 251
    return BASE[start:start + n]


def expected_sha(seed, size):
    h = hashlib.sha256()
    off = 0
    while off < size:
        n = min(CHUNK, size - off)
        h.update(piece(seed, off, n))
        off += n
    return h.hexdigest()


async def handle(reader, writer):
    try:
        seed, size = (int(x) for x in (await reader.readline()).split())
        sent = 0
        while sent < size:
            n = min(CHUNK, size - sent)
            writer.write(piece(seed, sent, n))
            await writer.drain()
            sent += n
            if sent < size:
                await asyncio.sleep(PACE)
        writer.close()
        await writer.wait_closed()
    except (OSError, ValueError):
        writer.close()


async def serve(port):
    server = await asyncio.start_server(handle, "0.0.0.0", port, backlog=1024)
    async with server:
        await server.serve_forever()


def endpoint(s):
    host, port = s.rsplit(":", 1)
    return host.strip("[]"), int(port)


async def one(addr, seed, size, first, stalls):
    host, port = addr
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
    except (OSError, asyncio.TimeoutError):
        first.set_result(None)
        return "failed"
    writer.write(b"%d %d\n" % (seed, size))
    await writer.drain()
    h = hashlib.sha256()
    got = 0
    last = time.monotonic()
    stall = 0.0
    try:
        while True:
            data = await asyncio.wait_for(reader.read(65536), 60)
            now = time.monotonic()
            stall = max(stall, now - last)
            last = now
            if not data:
                break
            if not first.done():
                first.set_result(None)
            h.update(data)
            got += len(data)
    except (OSError, asyncio.TimeoutError):
        return "failed"
    finally:
        if not first.done():
            first.set_result(None)
        stalls.append(stall)
        writer.close()
    return "ok" if got == size and h.hexdigest() == expected_sha(seed, size) else "bad"


async def fetch(size, count, addrs):
    loop = asyncio.get_running_loop()
    runs = []
    for a in addrs:
        stalls = []
        firsts = [loop.create_future() for _ in range(count)]
        tasks = [
            asyncio.create_task(one(endpoint(a), seed, size, firsts[seed], stalls))
            for seed in range(count)
        ]
        runs.append((a, tasks, firsts, stalls))
    await asyncio.gather(*(f for _, _, fs, _ in runs for f in fs))
    print("streaming", flush=True)
    for a, tasks, _, stalls in runs:
        results = await asyncio.gather(*tasks)
        print(
            "%s ok=%d bad=%d failed=%d of=%d max_stall=%.1f"
            % (
                a,
                results.count("ok"),
                results.count("bad"),
                results.count("failed"),
                count,
                max(stalls, default=0.0),
            ),
            flush=True,
        )


async def probe(addr, timeout):
    t0 = time.monotonic()
    host, port = addr
    while time.monotonic() - t0 < timeout:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 0.5)
            w.write(b"0 64\n")
            data = await asyncio.wait_for(r.read(), 2)
            w.close()
            if data == piece(0, 0, 64):
                print("%.2f" % (time.monotonic() - t0), flush=True)
                return 0
        except (OSError, asyncio.TimeoutError):
            pass
        await asyncio.sleep(0.1)
    return 1


def main():
    cmd = sys.argv[1]
    if cmd == "serve":
        asyncio.run(serve(int(sys.argv[2])))
    elif cmd == "fetch":
        asyncio.run(fetch(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]))
    elif cmd == "probe":
        sys.exit(asyncio.run(probe(endpoint(sys.argv[2]), float(sys.argv[3]))))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
