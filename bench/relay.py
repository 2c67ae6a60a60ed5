#!/usr/bin/env python3
"""A counting relay on 127.0.0.1 for bench/delta.sh: forwards LISTEN_PORT
to UPSTREAM_PORT and keeps, in STATS_FILE, the bytes sent to the client
(headers included) and the blob GETs seen ("bytes requests"), rewritten
after every connection. Zero them by writing "0 0" to the file."""
import socket, sys, threading

listen, upstream, stats = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
lock = threading.Lock()
open(stats, "w").write("0 0\n")

def add(nbytes, nreq):
    with lock:
        b, r = map(int, open(stats).read().split())
        open(stats, "w").write(f"{b + nbytes} {r + nreq}\n")

def pump(src, dst, count):
    total, reqs = 0, 0
    try:
        while True:
            d = src.recv(65536)
            if not d:
                break
            if count:
                total += len(d)
            else:
                reqs += d.count(b"GET /v2/") and d.count(b"/blobs/sha256:")
            dst.sendall(d)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    add(total, reqs)

s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", listen))
s.listen(16)
while True:
    c, _ = s.accept()
    u = socket.create_connection(("127.0.0.1", upstream))
    threading.Thread(target=pump, args=(c, u, False), daemon=True).start()
    threading.Thread(target=pump, args=(u, c, True), daemon=True).start()
