#!/usr/bin/env python3
"""No program of the project routes exceptions through libunwind (issue 19).

The nongnu libunwind also exports _Unwind_RaiseException and the rest of the
exception ABI. When a program links -lunwind ahead of libgcc_s, libstdc++'s
throws bind to libunwind's: a throw costs ~120 us instead of ~1 us, and
capture_stress's samples mostly land in an unwind. For every ELF program in
the build tree, the dynamic loader is asked (without running the program)
where libstdc++'s _Unwind_RaiseException binds: it must be libgcc_s.

Usage: unwind_binding_test.py BUILD_ROOT"""
import os
import pathlib
import re
import subprocess
import sys

build_root = pathlib.Path(sys.argv[1])
binding = re.compile(r"binding file (\S*libstdc\+\+\S*) \[\d+\] to (\S+) \[\d+\]: normal symbol `_Unwind_RaiseException'")


def programs():
    for path in sorted(build_root.rglob("*")):
        parts = path.relative_to(build_root).parts
        if any(p.endswith(".p") or p.startswith("meson-") for p in parts):
            continue
        if "fuzz-http" in parts:
            continue  # built by fuzz/run-fuzz.sh with clang's ASan, whose own _Unwind_RaiseException forwards to libgcc_s
        if not path.is_file() or path.suffix in (".so", ".a", ".o") or ".so." in path.name:
            continue
        if not os.access(path, os.X_OK):
            continue
        with open(path, "rb") as f:
            if f.read(4) != b"\x7fELF":
                continue
        yield path


checked = 0
failures = []
for program in programs():
    env = dict(os.environ, LD_TRACE_LOADED_OBJECTS="1", LD_WARN="yes", LD_BIND_NOW="yes", LD_DEBUG="bindings")
    env.pop("LD_PRELOAD", None)
    out = subprocess.run([str(program)], env=env, capture_output=True, text=True, timeout=60)
    targets = {m.group(2) for m in binding.finditer(out.stdout + out.stderr)}
    if not targets:
        continue  # no C++ exceptions in this program (or no libstdc++)
    checked += 1
    wrong = [t for t in targets if "libgcc_s" not in t]
    name = program.relative_to(build_root)
    if wrong:
        failures.append(f"{name}: libstdc++'s _Unwind_RaiseException binds to {', '.join(wrong)}")
    else:
        print(f"ok   {name}")

for f in failures:
    print("FAIL " + f)
print(f"{checked} programs checked, {len(failures)} bound to another unwinder")
if checked == 0:
    print("FAIL no program was checked")
    sys.exit(1)
sys.exit(1 if failures else 0)
