#!/usr/bin/env python3
"""Judge a disk of the boot test's power-cut torture, read on the host.

    disk-check.py DUMP INODES VERSIONS MODE [REFERENCE]
    disk-check.py tree DIR     (prints the tree digest of DIR)

DUMP: the disk's files (debugfs rdump of /, after replaying the journal);
INODES: `debugfs -R "ls -l /"` of it (rdump keeps no inode numbers);
VERSIONS: JSON {"v0": {"tree": T, "image": D, "blobs": [...]}, ...} with
each version's tree digest (as the image's /sbin/init prints it) and the
blobs its image has; MODE: "cut" (right after a power cut of the update from
v1 to v2: a state the next run recovers from), "final" (after a boot that
ran to its end: what an uncut update leaves; REFERENCE, when given, is the
state an uncut update printed) or "settled" (ROOT is a whole known version
and the record that counts names it; blobs and index.json sound).
Prints the state as JSON; exits 1 with the broken promises on stderr.
"""
import hashlib
import json
import os
import stat
import sys


def tree_digest(top):
    """sha256 of `sha256sum` lines of every regular file, sorted by path,
    /proc and the boot mark left out (what the image's init prints)."""
    if not os.path.isdir(top):
        return None
    lines = []
    for d, dirs, files in os.walk(top):
        rel = os.path.relpath(d, top)
        rel = "." if rel == "." else "./" + rel
        if rel == "./proc":
            dirs[:] = []
            continue
        for f in files:
            p = os.path.join(d, f)
            path = rel + "/" + f
            if path == "./.minipull-boot-ok" or not stat.S_ISREG(os.lstat(p).st_mode):
                continue
            with open(p, "rb") as fh:
                lines.append((path.encode(), hashlib.sha256(fh.read()).hexdigest()))
    lines.sort()
    text = b"".join(h.encode() + b"  " + path + b"\n" for path, h in lines)
    return hashlib.sha256(text).hexdigest()


def main():
    if sys.argv[1] == "tree":
        print(tree_digest(sys.argv[2]))
        return
    dump, inodes_file, versions_file, mode = sys.argv[1:5]
    versions = json.load(open(versions_file))
    by_tree = {v["tree"]: k for k, v in versions.items()}
    by_image = {v["image"]: k for k, v in versions.items()}
    inodes = {}
    for line in open(inodes_file, errors="replace"):
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            inodes[parts[-1]] = int(parts[0])
    bad = []

    def version_at(name):
        t = tree_digest(os.path.join(dump, name))
        return None if t is None else by_tree.get(t, "other")

    def read_json(name):
        try:
            return json.load(open(os.path.join(dump, name)))
        except (OSError, ValueError):
            return None

    st = {n: version_at(n) for n in ["root", "root.old", ".root.minipull-staging", ".root.minipull-retired",
                                     ".root.minipull-previous"]}
    record, pending = read_json("root.minipull.json"), read_json(".root.minipull-pending.json")
    # The record that counts: the pending one when it names ROOT's tree.
    counts = record
    if pending and not pending.get("inPlace") and pending.get("inode") == inodes.get("root"):
        counts = pending
    st["record"] = by_image.get((record or {}).get("digest"), (record or {}).get("digest"))
    st["record_inode_matches"] = bool(record) and record.get("inode") == inodes.get("root")
    st["pending"] = by_image.get((pending or {}).get("digest"), (pending or {}).get("digest"))
    st["counts"] = by_image.get((counts or {}).get("digest"), (counts or {}).get("digest"))
    if st["root"] not in versions:
        bad.append(f"ROOT holds {st['root']}, not a whole version")
    if st["counts"] != st["root"]:
        bad.append(f"the record that names ROOT's tree names {st['counts']}, ROOT holds {st['root']}")
    # The previous root: where the next run finds it.
    prev = {"v2": "v1", "v1": "v0"}.get(st["root"])
    olds = [n for n in ["root.old", ".root.minipull-staging", ".root.minipull-retired", ".root.minipull-previous"]
            if st[n] == prev]
    if mode == "final":
        if st["root.old"] != prev:
            bad.append(f"ROOT.old holds {st['root.old']}, not the previous root {prev}")
    elif mode == "cut" and not olds:
        bad.append(f"the previous root {prev} is nowhere on the disk")

    # Blobs: each one's content matches its name; each index entry has its blobs.
    blobs_dir = os.path.join(dump, "oci/blobs/sha256")
    blobs = sorted(os.listdir(blobs_dir)) if os.path.isdir(blobs_dir) else []
    for b in blobs:
        with open(os.path.join(blobs_dir, b), "rb") as fh:
            if hashlib.sha256(fh.read()).hexdigest() != b:
                bad.append(f"blob {b} does not hold what its name says")
    index = read_json("oci/index.json") or {"manifests": []}
    st["index"] = []
    for m in index.get("manifests", []):
        d = m["digest"].split(":", 1)[1]
        st["index"].append(by_image.get(m["digest"], m["digest"]))
        if d not in blobs:
            bad.append(f"index.json names {m['digest']}, which is not on the disk")
            continue
        man = json.load(open(os.path.join(blobs_dir, d)))
        # A signature keeps only what its proof needs (the signed payload),
        # not the signature manifest's empty config.
        sig = "io.minipull.signature.of" in (m.get("annotations") or {})
        for desc in ([] if sig else [man.get("config", {})]) + man.get("layers", []):
            if desc.get("digest", ":").split(":", 1)[1] not in blobs:
                bad.append(f"index.json's {m['digest']} lacks its blob {desc.get('digest')}")
    have = set("sha256:" + b for b in blobs)
    st["blobs_of"] = {k: sorted(set(v["blobs"]) & have) == sorted(v["blobs"]) for k, v in versions.items()}
    st["blobs"] = sorted(have)
    st["leftovers"] = sorted(n for n in os.listdir(dump) if n.startswith(".root.") and n != ".root.minipull-lock")
    if os.path.exists(os.path.join(dump, "oci/.minipull/prune.json")):
        st["leftovers"].append("oci/.minipull/prune.json")
    if mode == "final":
        if st["record"] != st["root"] or not st["record_inode_matches"]:
            bad.append(f"ROOT.minipull.json names {st['record']} (inode bound: {st['record_inode_matches']}), ROOT holds {st['root']}")
        if st["leftovers"]:
            bad.append(f"left on the disk: {st['leftovers']}")
        own = set(versions["v1"]["blobs"]) - set(versions["v2"]["blobs"])
        if own & have:
            bad.append(f"v1's own blobs are still on the disk: {sorted(own & have)}")
    if mode == "final" and len(sys.argv) > 5:
        ref = json.load(open(sys.argv[5]))
        if st["blobs"] != ref["blobs"]:
            extra = sorted(set(st["blobs"]) - set(ref["blobs"]))
            missing = sorted(set(ref["blobs"]) - set(st["blobs"]))
            bad.append(f"the blobs differ from an uncut update's: extra {extra}, missing {missing}")
        if st["index"] != ref["index"]:
            bad.append(f"index.json names {st['index']}, an uncut update's {ref['index']}")
    print(json.dumps(st))
    for b in bad:
        print("disk-check: " + b, file=sys.stderr)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
