#!/usr/bin/env python3
"""Sums test cases over meson test logs and prints `N passed, N failed`.

A doctest executable counts its own test cases (its summary line); any other
test (a shell or Python integration test) counts as one case.
Usage: summarize-tests.py BUILD_DIR [BUILD_DIR ...]
"""
import json
import re
import sys

DOCTEST = re.compile(r"\[doctest\] test cases:\s*(\d+) \|\s*(\d+) passed \|\s*(\d+) failed")


def count(build_dir):
    passed = failed = 0
    with open(f"{build_dir}/meson-logs/testlog.json") as log:
        for line in log:
            test = json.loads(line)
            if test["result"] == "EXPECTEDFAIL":
                passed += 1  # a test that must fail (e.g. a strict-mode check) did
                continue
            ok = test["result"] in ("OK", "SKIP")
            # The last summary is the executable's own: a forked child that
            # dies in doctest's crash handler prints one of its own first.
            summaries = DOCTEST.findall(test.get("stdout", "") or "")
            m = summaries[-1] if summaries else None
            if m:
                passed += int(m[1])
                failed += int(m[2])
                if not ok and int(m[2]) == 0:
                    failed += 1  # crashed after its summary, or exit code non-zero
            elif test["result"] != "SKIP":
                passed, failed = (passed + 1, failed) if ok else (passed, failed + 1)
    return passed, failed


def main():
    passed = failed = 0
    for build_dir in sys.argv[1:]:
        p, f = count(build_dir)
        print(f"{build_dir}: {p} passed, {f} failed", file=sys.stderr)
        passed, failed = passed + p, failed + f
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
