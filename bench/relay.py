#!/usr/bin/env python3
"""A counting, link-shaping TCP relay on 127.0.0.1 for bench/delta.sh.

    relay.py LISTEN_PORT UPSTREAM_PORT STATS_FILE [--rate BYTES_PER_S]
             [--rtt MS] [--burst BYTES] [--timeout S] [--max-conns N]

Forwards 127.0.0.1:LISTEN_PORT to 127.0.0.1:UPSTREAM_PORT and keeps, in
STATS_FILE, the bytes sent to the client (headers included) and the blob
GETs seen, "BYTES REQUESTS", rewritten after every connection. Zero them by
writing "0 0" to the file.

The link it models (both off by default, then it only counts):
  --rate: a token bucket per direction, shared by every connection in that
    direction (one link, not one per connection), BURST bytes deep;
  --rtt: a one-way delay of RTT/2 each way, applied per chunk: every chunk
    is stamped when it has passed the rate limit and delivered RTT/2 later
    by a second thread, so a connection keeps a bandwidth x delay product
    in flight instead of stalling RTT/2 per read; a new connection's first
    bytes wait one RTT more (the handshake the local accept does not cost).
It exits on SIGTERM/SIGINT, when STATS_FILE.stop exists, or after --timeout
seconds (default one hour); at most --max-conns connections at once.
Python 3 standard library only.
"""
import argparse
import collections
import os
import signal
import socket
import sys
import threading
import time

p = argparse.ArgumentParser()
p.add_argument("listen", type=int)
p.add_argument("upstream", type=int)
p.add_argument("stats")
p.add_argument("--rate", type=float, default=0, help="bytes/s each way, 0 = unlimited")
p.add_argument("--rtt", type=float, default=0, help="round-trip delay in ms")
p.add_argument("--burst", type=int, default=4096, help="token bucket depth in bytes")
p.add_argument("--timeout", type=float, default=3600, help="exit after this many seconds")
p.add_argument("--max-conns", type=int, default=64)
a = p.parse_args()

CHUNK = 4096 if a.rate else 65536  # shaping granularity
ONE_WAY = a.rtt / 2000.0
deadline = time.monotonic() + a.timeout
lock = threading.Lock()
open(a.stats, "w").write("0 0\n")
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
signal.signal(signal.SIGINT, lambda *_: os._exit(0))


def add(nbytes, nreq):
    with lock:
        try:
            b, r = map(int, open(a.stats).read().split())
        except (OSError, ValueError):
            b, r = 0, 0
        open(a.stats, "w").write(f"{b + nbytes} {r + nreq}\n")


class Bucket:
    """A token bucket by reservation: take n tokens now (the level may go
    below zero) and sleep until the level the taker left is back to zero."""

    def __init__(self, rate, depth):
        self.rate, self.depth = rate, depth
        self.level, self.t = float(depth), time.monotonic()
        self.m = threading.Lock()

    def take(self, n):
        if not self.rate:
            return
        with self.m:
            now = time.monotonic()
            self.level = min(self.depth, self.level + (now - self.t) * self.rate)
            self.t = now
            self.level -= n
            wait = -self.level / self.rate if self.level < 0 else 0
        if wait > 0:
            time.sleep(wait)


# One bucket per direction: to the client (down) and to the registry (up).
down, up = Bucket(a.rate, a.burst), Bucket(a.rate, a.burst)
conns = threading.BoundedSemaphore(a.max_conns)


def pump(src, dst, to_client, done):
    """src -> rate limit -> stamp -> (deliverer) -> dst after ONE_WAY."""
    bucket = down if to_client else up
    q = collections.deque()
    cv = threading.Condition()
    total, reqs = 0, 0

    def deliver():
        while True:
            with cv:
                while not q:
                    cv.wait()
                at, d = q.popleft()
            wait = at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if d is None:
                break
            try:
                dst.sendall(d)
            except OSError:
                try:  # the peer is gone: stop reading the other side too
                    src.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                break
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        done()

    t = threading.Thread(target=deliver, daemon=True)
    t.start()
    if not to_client:
        time.sleep(2 * ONE_WAY)  # the TCP handshake a real link costs: one RTT
    try:
        while True:
            d = src.recv(CHUNK)
            if not d:
                break
            if to_client:
                total += len(d)
            else:
                reqs += d.count(b"GET /v2/") and d.count(b"/blobs/sha256:")
            bucket.take(len(d))
            with cv:
                while len(q) >= 4096:  # bounded without a rate limit too
                    cv.wait(0.1)
                q.append((time.monotonic() + ONE_WAY, d))
                cv.notify()
    except OSError:
        pass
    with cv:
        q.append((time.monotonic() + ONE_WAY, None))
        cv.notify()
    add(total, reqs)


def serve(c):
    try:
        u = socket.create_connection(("127.0.0.1", a.upstream), timeout=10)
        u.settimeout(None)
    except OSError:
        c.close()
        conns.release()
        return
    left = [2]
    m = threading.Lock()

    def done():
        with m:
            left[0] -= 1
            last = left[0] == 0
        if last:
            c.close()
            u.close()
            conns.release()

    threading.Thread(target=pump, args=(c, u, False, done), daemon=True).start()
    threading.Thread(target=pump, args=(u, c, True, done), daemon=True).start()


s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", a.listen))
s.listen(16)
s.settimeout(0.5)
while time.monotonic() < deadline and not os.path.exists(a.stats + ".stop"):
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    c.settimeout(None)
    if not conns.acquire(timeout=5):
        c.close()
        continue
    serve(c)
sys.exit(0)
