#!/usr/bin/env python3
"""The layering check itself: it passes on the tree as it is, and fails, naming
the file and the rule, on a copy with an include that runs back up a layer
(the scheduler including the watchdog, as it once did)."""
import pathlib
import shutil
import subprocess
import sys
import tempfile

source_root = pathlib.Path(sys.argv[1])
checker = source_root / "scripts" / "check-layers.py"
failures = 0


def check(ok, what, output=""):
    global failures
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures += 1
        print(output)


real = subprocess.run([sys.executable, checker, source_root], capture_output=True, text=True)
check(real.returncode == 0, "the tree keeps the layering of docs/ARCHITECTURE.md", real.stdout + real.stderr)

with tempfile.TemporaryDirectory() as tmp:
    copy = pathlib.Path(tmp)
    shutil.copytree(source_root / "src", copy / "src")
    (copy / "docs").mkdir()
    shutil.copy(source_root / "docs" / "ARCHITECTURE.md", copy / "docs")
    loop = copy / "src" / "core" / "loop.cpp"
    loop.write_text('#include "watchdog/watchdog.hpp"\n' + loop.read_text())
    crossed = subprocess.run([sys.executable, checker, copy], capture_output=True, text=True)
    check(crossed.returncode == 1, "an upward include fails the check", crossed.stdout + crossed.stderr)
    check('src/core/loop.cpp: includes "watchdog/…"' in crossed.stderr, "the error names the file and the folder",
          crossed.stderr)

    (copy / "src" / "newpart").mkdir()
    (copy / "src" / "newpart" / "x.cpp").write_text("")
    unlisted = subprocess.run([sys.executable, checker, copy], capture_output=True, text=True)
    check("src/newpart/ is not in docs/ARCHITECTURE.md" in unlisted.stderr, "a folder missing from the table fails",
          unlisted.stderr)

sys.exit(1 if failures else 0)
