#!/usr/bin/env python3
"""Long, paced TCP downloads for the scale-out test (tests/scaleout.rs).

  ecmp-stream.py serve NAME PORT
      On each real server: for every connection, read one request line
      "BYTES RATE", answer with "NAME\\n" and then BYTES bytes of a fixed
      pattern, RATE bytes per second (in tenths of a second), then close.
  ecmp-stream.py fetch HOST PORT COUNT BYTES RATE [RAMP]
      On the client: COUNT connections (started over RAMP seconds, default
      1), each checking every byte of the pattern and the total. Prints one
      JSON line: {"ok": n, "failed": n, "servers": {name: n}, "errors": {..}}.

Why not curl: 300 curl processes cost too much memory on a test machine;
one asyncio loop holds every connection, and a connection that moved to
another real server mid-stream shows as a reset or a pattern break.
"""
import asyncio
import json
import sys

PERIOD = 251
PATTERN = bytes(i % PERIOD for i in range(PERIOD + 65536))
STALL = 20.0  # seconds without a byte before a download counts as failed


def expected(offset, n):
    o = offset % PERIOD
    return PATTERN[o:o + n]


async def serve_one(name, reader, writer):
    try:
        line = await reader.readline()
        total, rate = (int(x) for x in line.split())
        writer.write(name.encode() + b"\n")
        sent, step = 0, max(1, rate // 10)
        while sent < total:
            n = min(step, total - sent)
            writer.write(expected(sent, n))
            await writer.drain()
            sent += n
            await asyncio.sleep(0.1)
    except (ConnectionError, ValueError, OSError):
        pass
    finally:
        writer.close()


async def serve(name, port):
    srv = await asyncio.start_server(
        lambda r, w: serve_one(name, r, w), "0.0.0.0", port, backlog=1024)
    async with srv:
        await srv.serve_forever()


async def fetch_one(host, port, total, rate, delay, result):
    await asyncio.sleep(delay)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), STALL)
        writer.write(f"{total} {rate}\n".encode())
        await writer.drain()
        name = (await asyncio.wait_for(reader.readline(), STALL)).decode().strip()
        got = 0
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), STALL)
            if not chunk:
                break
            if chunk != expected(got, len(chunk)):
                raise ValueError(f"pattern broken at byte {got}")
            got += len(chunk)
        writer.close()
        if got != total:
            raise ValueError(f"short: {got} of {total} bytes")
        result["ok"] += 1
        result["servers"][name] = result["servers"].get(name, 0) + 1
    except Exception as e:  # every failure is counted, by kind
        kind = type(e).__name__ + (f": {e}" if isinstance(e, ValueError) else "")
        result["failed"] += 1
        result["errors"][kind] = result["errors"].get(kind, 0) + 1


async def fetch(host, port, count, total, rate, ramp):
    result = {"ok": 0, "failed": 0, "servers": {}, "errors": {}}
    await asyncio.gather(*(
        fetch_one(host, port, total, rate, ramp * i / count, result)
        for i in range(count)))
    print(json.dumps(result, sort_keys=True), flush=True)


def main():
    if sys.argv[1] == "serve":
        asyncio.run(serve(sys.argv[2], int(sys.argv[3])))
    elif sys.argv[1] == "fetch":
        host, port, count, total, rate = sys.argv[2:7]
        ramp = float(sys.argv[7]) if len(sys.argv) > 7 else 1.0
        asyncio.run(fetch(host, int(port), int(count), int(total), int(rate), ramp))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
