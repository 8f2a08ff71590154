#!/usr/bin/env python3
"""Prints the ninja targets the tests of some suites need, one per line.

Lets a sanitizer build compile only what its suites run.
Usage: suite-targets.py BUILD_DIR SUITE [SUITE ...]
"""
import json
import os
import subprocess
import sys


def introspect(build_dir, what):
    out = subprocess.run(["meson", "introspect", build_dir, what], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main():
    build_dir, suites = sys.argv[1], set(sys.argv[2:])
    files_of = {t["id"]: t["filename"] for t in introspect(build_dir, "--targets")}
    root = os.path.realpath(build_dir)
    wanted = set()
    for test in introspect(build_dir, "--tests"):
        if not suites & {s.split(":")[-1] for s in test["suite"]}:
            continue
        for dep in test.get("depends", []):
            wanted.update(files_of.get(dep, []))
    for path in sorted(wanted):
        print(os.path.relpath(os.path.realpath(path), root))


if __name__ == "__main__":
    main()
