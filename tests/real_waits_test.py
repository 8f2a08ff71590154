#!/usr/bin/env python3
"""Real libraries on a loop fiber (tests/probes/real_waits.cpp), with
libstallwatch-probes preloaded.

For each scenario:
- short (the call waits about 5 ms, the threshold is 1 s) in strict mode:
  the process ends with status 70, its blocking-call report names the call
  and, as culprit, the scenario's `// LINE:<scenario>` line;
- long (the call waits about 300 ms, threshold 50 ms): the watchdog reports
  a stall of the right kind whose culprit is that line, in text and in JSON.

libcurl and SQLite frames are the system's (under /usr/lib): the defaults
pass over them to the calling line, with no STALLWATCH_NOT_APP.

usage: real_waits_test.py <real_waits> <libstallwatch-probes.so> <real_waits.cpp>
"""
import json
import os
import re
import subprocess
import sys

PROGRAM, PROBES_LIB, SOURCE = sys.argv[1:4]

# scenario: (the probed calls its short run may be ended by,
#            the system calls its long stall may be blocked in)
SCENARIOS = {
    "curl": ({"curl_easy_perform"}, {"poll", "ppoll"}),
    "sqlite": ({"pread", "open", "fcntl", "usleep"}, {"clock_nanosleep", "nanosleep"}),
    "ifstream": ({"fopen", "open", "read"}, {"openat", "open"}),
    "future": ({"futex"}, {"futex"}),
    "condition_variable": ({"pthread_cond_wait"}, {"futex"}),
    "shared_mutex": ({"pthread_rwlock_rdlock"}, {"futex"}),
    "lock_guard": ({"pthread_mutex_lock"}, {"futex"}),
    "popen": ({"popen"}, {"wait4", "waitid"}),
    "system": ({"system"}, {"wait4", "waitid"}),
    "join": ({"pthread_join"}, {"futex"}),
}

# What each short run's report advises instead (emit/advice.cpp's table).
ADVICE = {
    "curl": "stallwatch::curl::perform or stallwatch::http",
    "future": "stallwatch::Future",
    "condition_variable": "stallwatch::Future",
    "popen": "stallwatch::run_process",
    "system": "stallwatch::run_process",
}

failures = []


def check(ok, what, detail=""):
    if not ok:
        failures.append(what)
        print(f"FAIL: {what}\n{detail}", file=sys.stderr)
    else:
        print(f"ok: {what}")


def marker_lines():
    lines = {}
    with open(SOURCE) as f:
        for number, text in enumerate(f, 1):
            m = re.search(r"// LINE:(\w+)$", text.rstrip())
            if m:
                lines[m.group(1)] = number
    return lines


def run(scenario, length, extra_env):
    env = dict(os.environ)
    env.update({
        "LD_PRELOAD": PROBES_LIB,
        "STALLWATCH_METRICS_ADDR": "off",
    })
    env.pop("STALLWATCH_NOT_APP", None)
    env.update(extra_env)
    return subprocess.run([PROGRAM, scenario, length], env=env, capture_output=True, text=True, timeout=60)


def short_run(scenario, functions, line):
    p = run(scenario, "short", {"STALLWATCH_STRICT": "1", "STALLWATCH_THRESHOLD_MS": "1000"})
    detail = p.stderr[-4000:]
    check(p.returncode == 70, f"{scenario} short: strict mode ends the process (70, got {p.returncode})", detail)
    m = re.search(r'^stallwatch: blocking call (\w+) on loop=\d+ fiber=\d+ "[^"]*" in (.*) at (\S+):(\d+), '
                  r"in strict mode", p.stderr, re.M)
    check(m is not None, f"{scenario} short: a strict-mode blocking-call report with a culprit", detail)
    if m is None:
        return
    check(m.group(1) in functions, f"{scenario} short: the call is named ({m.group(1)} in {sorted(functions)})",
          detail)
    check(m.group(3).endswith("tests/probes/real_waits.cpp") and int(m.group(4)) == line,
          f"{scenario} short: the culprit is LINE:{scenario} ({m.group(3)}:{m.group(4)}, expected {line})", detail)
    advice = re.search(r"^  advice: (.*)$", p.stderr, re.M)
    expected = ADVICE.get(scenario, "stallwatch::in_thread")
    check(advice is not None and expected in advice.group(1),
          f"{scenario} short: the report advises {expected!r} ({advice.group(1) if advice else 'no advice line'})",
          detail)


def long_run(scenario, syscalls, line):
    p = run(scenario, "long", {"STALLWATCH_THRESHOLD_MS": "50"})
    detail = p.stderr[-4000:]
    check(p.returncode == 0 and p.stdout == f"done {scenario} long\n",
          f"{scenario} long: the scenario runs to its end", detail + p.stdout)
    m = re.search(r'^stallwatch: stall loop=\d+ fiber=\d+ "' + scenario +
                  r'" blocked in (\w+) for \d+ ms in (.*) at (\S+):(\d+) \(cpu ', p.stderr, re.M)
    check(m is not None, f"{scenario} long: a stall report, blocked, with a culprit", detail)
    if m is not None:
        check(m.group(1) in syscalls, f"{scenario} long: blocked in {m.group(1)} (one of {sorted(syscalls)})", detail)
        check(m.group(3).endswith("tests/probes/real_waits.cpp") and int(m.group(4)) == line,
              f"{scenario} long: the culprit is LINE:{scenario} ({m.group(3)}:{m.group(4)}, expected {line})",
              detail)

    p = run(scenario, "long", {"STALLWATCH_THRESHOLD_MS": "50", "STALLWATCH_LOG_FORMAT": "json"})
    stalls = []
    for text in p.stderr.splitlines():
        if text.startswith("{"):
            event = json.loads(text)
            if event.get("event") == "stall":
                stalls.append(event)
    check(len(stalls) >= 1, f"{scenario} long, JSON: a stall event", p.stderr[-4000:])
    if stalls:
        culprit = stalls[0].get("culprit") or {}
        check(stalls[0]["kind"] == "blocked" and stalls[0]["syscall"] in syscalls,
              f"{scenario} long, JSON: kind blocked in {stalls[0]['syscall']}", json.dumps(stalls[0])[:2000])
        check(culprit.get("file", "").endswith("tests/probes/real_waits.cpp") and culprit.get("line") == line
              and culprit.get("module") == os.path.basename(PROGRAM),
              f"{scenario} long, JSON: culprit {culprit.get('file')}:{culprit.get('line')} in "
              f"{culprit.get('module')}, expected line {line}", json.dumps(stalls[0])[:2000])


def main():
    lines = marker_lines()
    for scenario, (functions, syscalls) in SCENARIOS.items():
        if scenario not in lines:
            check(False, f"{SOURCE} has a // LINE:{scenario} marker")
            continue
        short_run(scenario, functions, lines[scenario])
        long_run(scenario, syscalls, lines[scenario])
    print(f"{len(failures)} failed" if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
