#!/usr/bin/env python3
"""The boot test's forwarder for one guest connection (qemu guestfwd cmd:).

  count-forward.py PORT DIR [RATE]

Relays stdin/stdout (the guest's connection) to 127.0.0.1:PORT and keeps
the number of bytes sent to the guest so far in DIR/fwd.<pid>, so the test
can cut the power at a chosen point of a download and count what came after;
the Range headers the guest sends (where a resume starts) go to DIR/ranges.
RATE (bytes/s) slows what goes to the guest down to that rate.
"""
import os
import re
import select
import socket
import sys
import time

port, d = int(sys.argv[1]), sys.argv[2]
rate = int(sys.argv[3]) if len(sys.argv) > 3 else 0
t0 = time.monotonic()
up = socket.create_connection(("127.0.0.1", port))
count_path = os.path.join(d, f"fwd.{os.getpid()}")
sent = reported = 0
stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
open_in = True
while True:
    r, _, _ = select.select([up] + ([stdin] if open_in else []), [], [])
    if stdin in r:
        data = os.read(stdin, 65536)
        if data:
            up.sendall(data)
            for rng in re.findall(rb"(?i)\r\nrange: *(bytes=[0-9]+-[0-9]*)", data):
                with open(os.path.join(d, "ranges"), "a") as f:
                    f.write(rng.decode() + "\n")
        else:
            open_in = False
            up.shutdown(socket.SHUT_WR)
    if up in r:
        data = up.recv(65536)
        if not data:
            break
        view = memoryview(data)
        while view:
            view = view[os.write(stdout, view):]
        sent += len(data)
        if rate:
            time.sleep(max(0.0, sent / rate - (time.monotonic() - t0)))
        if sent - reported >= 256 * 1024:
            with open(count_path + ".tmp", "w") as f:
                f.write(f"{sent}\n")
            os.replace(count_path + ".tmp", count_path)
            reported = sent
with open(count_path, "w") as f:
    f.write(f"{sent}\n")
