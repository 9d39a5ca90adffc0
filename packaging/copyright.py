#!/usr/bin/env python3
"""Writes the package's copyright file: uplink's own license, then every crate linked into the
binary (the normal dependencies of `uplink` with the features given, from `cargo metadata`;
build scripts, proc-macros and dev-dependencies are not shipped), each with its version, license
expression and authors, then each distinct license text those crates ship (LICENSE*, COPYING*,
NOTICE*), once, with the crates that carry it.

Usage: copyright.py FEATURES < cargo-metadata.json > copyright
Fails (exit 1) when a bundled crate declares no license: a package must not ship one unnamed.
"""
import hashlib
import json
import os
import sys

APACHE = (
    "The Apache License, Version 2.0: on Debian systems its complete text is in\n"
    "/usr/share/common-licenses/Apache-2.0."
)

features = sys.argv[1] if len(sys.argv) > 1 else ""
meta = json.load(sys.stdin)
packages = {p["id"]: p for p in meta["packages"]}
nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
root = next(p["id"] for p in meta["packages"] if p["name"] == "uplink" and p["source"] is None)


def is_proc_macro(pkg):
    return any("proc-macro" in t["kind"] for t in pkg["targets"])


linked, todo = set(), [root]
while todo:
    nid = todo.pop()
    if nid in linked:
        continue
    linked.add(nid)
    for dep in nodes[nid]["deps"]:
        kinds = [k["kind"] for k in dep["dep_kinds"]]
        if None in kinds and not is_proc_macro(packages[dep["pkg"]]):
            todo.append(dep["pkg"])

own = packages[root]
out = sys.stdout
out.write(
    "uplink {v}\n\nCopyright: the uplink authors\nLicense: {l}\n"
    "On Debian systems, the complete text of the Apache License 2.0 is in\n"
    "/usr/share/common-licenses/Apache-2.0.\n\n".format(v=own["version"], l=own["license"])
)
out.write(
    "Bundled crates\n==============\n\n"
    "/usr/bin/uplink is statically linked with these Rust crates{f} (name, version, license,\n"
    "authors), listed from `cargo metadata`:\n\n".format(
        f=" (features: " + features + ")" if features else ""
    )
)
texts = {}
missing = []
crates = sorted(
    (packages[i] for i in linked if packages[i]["source"] is not None),
    key=lambda p: (p["name"], p["version"]),
)
for p in crates:
    lic = p.get("license") or ("see " + p["license_file"] if p.get("license_file") else None)
    if not lic:
        missing.append(p["name"] + " " + p["version"])
        lic = "UNKNOWN"
    authors = ", ".join(p.get("authors") or []) or "its authors"
    out.write("- {} {}: {}\n  Copyright: {}\n".format(p["name"], p["version"], lic, authors))
    d = os.path.dirname(p["manifest_path"])
    for f in sorted(os.listdir(d)):
        up = f.upper()
        if up.startswith(("LICENSE", "LICENCE", "COPYING", "NOTICE")) and os.path.isfile(os.path.join(d, f)):
            with open(os.path.join(d, f), encoding="utf-8", errors="replace") as fh:
                text = fh.read().strip()
            flat = " ".join(text.split())
            if "Apache License" in flat and "Version 2.0, January 2004" in flat and "TERMS AND CONDITIONS" in flat:
                # Debian ships this text once for every package (Policy 12.5; lintian refuses a
                # copy): the crates' copies differ only in whitespace and the appendix example.
                text = APACHE
            h = hashlib.sha256(" ".join(text.split()).encode()).hexdigest()
            texts.setdefault(h, [text, []])[1].append(p["name"] + " " + p["version"])
out.write("\n{} crates.\n\nLicense texts\n=============\n\n".format(len(crates)))
for h, (text, users) in sorted(texts.items(), key=lambda kv: kv[1][1][0]):
    out.write("Shipped by: " + ", ".join(users) + "\n\n" + text + "\n\n" + "-" * 72 + "\n\n")
if missing:
    sys.stderr.write("copyright.py: these bundled crates declare no license: " + ", ".join(missing) + "\n")
    sys.exit(1)
