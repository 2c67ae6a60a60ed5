#!/usr/bin/env python3
"""Run qemu and cut its power (SIGKILL) at a chosen instant of the update.

    power-cut.py LOG MARKER DELAY -- QEMU-COMMAND...

Watches the serial console log LOG; DELAY seconds after the first line that
contains MARKER appears, qemu is SIGKILLed (the guest's page cache is lost,
as in a power cut). MARKER "-" (or one that never appears) lets the boot
run to its end. Prints, as JSON: the phase the console was in at the cut
(read from the log as it stood then), and when (seconds after qemu
started) each phase's marker line appeared, which is what an uncut
reference run is asked for.
"""
import json
import os
import signal
import subprocess
import sys
import time

# The phase a console line starts: /init's lines, then minipull's progress
# lines (minipull.verbose=1).
def phase_of(line):
    if "minipull-init: installing" in line:
        return "download"
    if "minipull: pulled " in line:
        return "unpack"
    if "minipull: unpacked layer " in line:
        n, m = line.split("unpacked layer ", 1)[1].split(":", 1)[0].split("/")
        return "swap" if n == m else "unpack"
    if "minipull: unpacked " in line or "already holds" in line:
        return "prune"
    if "minipull-init: installed" in line:
        return "boot"
    return None


def main():
    log, marker, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
    cmd = sys.argv[sys.argv.index("--") + 1:]
    start = time.monotonic()
    qemu = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    seen = {}  # phase -> seconds after start
    phase, cut_at, done = "before", None, 0
    deadline = start + 240
    while True:
        now = time.monotonic()
        try:
            with open(log, "rb") as f:
                f.seek(done)
                chunk = f.read()
        except FileNotFoundError:
            chunk = b""
        # Whole lines only.
        end = chunk.rfind(b"\n") + 1
        for raw in chunk[:end].splitlines():
            line = raw.decode("utf-8", "replace")
            p = phase_of(line)
            if p:
                phase = p
                seen.setdefault(p, round(now - start, 3))
            if cut_at is None and marker != "-" and marker in line:
                cut_at = now + delay
        done += end
        if cut_at is not None and now >= cut_at:
            qemu.send_signal(signal.SIGKILL)
            qemu.wait()
            # What reached the console before the cut.
            with open(log, "rb") as f:
                for raw in f.read()[done:].splitlines():
                    p = phase_of(raw.decode("utf-8", "replace"))
                    if p:
                        phase = p
            print(json.dumps({"cut": True, "phase": phase, "at": round(now - start, 3), "seen": seen}))
            return
        if qemu.poll() is not None or now > deadline:
            if qemu.poll() is None:
                qemu.kill()
                qemu.wait()
            print(json.dumps({"cut": False, "phase": phase, "at": round(now - start, 3), "seen": seen}))
            return
        time.sleep(0.005)


if __name__ == "__main__":
    main()
