#!/usr/bin/env python3
"""The watchdog with real programs: strict mode, JSON lines, blocking calls,
the rate limit through the environment, USDT probes in `readelf -n`, and a
bpftrace script from probes/ attached to a running program.

usage: watchdog_programs_test.py STALL_EXAMPLE LIBSTALLWATCH_SO PROBES_DIR PROBES_SO BLOCKING_DEMO
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

EXAMPLE, LIBRARY, PROBES, PROBES_SO, BLOCKING_DEMO = (os.path.abspath(a) for a in sys.argv[1:6])
STRICT_EXIT_STATUS = 70
failures = []


def check(condition, what, detail=""):
    print(("ok   " if condition else "FAIL ") + what)
    if not condition:
        failures.append(what)
        if detail:
            print("     " + detail.replace("\n", "\n     "))


def run_example(args, **env):
    full_env = dict(os.environ, STALLWATCH_METRICS_ADDR="off", **env)
    return subprocess.run([EXAMPLE] + args, env=full_env, capture_output=True, text=True, timeout=120)


def test_strict_mode():
    # Strict mode also makes blocking calls fatal, which needs the probes.
    p = run_example(["cpu"], STALLWATCH_STRICT="1", LD_PRELOAD=PROBES_SO)
    check(p.returncode == STRICT_EXIT_STATUS, "strict mode ends the process with status 70",
          f"status {p.returncode}\n{p.stderr}")
    check('"cpu hog" on-cpu for' in p.stderr or '"cpu hog" preempted for' in p.stderr,
          "strict mode writes the report first", p.stderr)
    check("compute_for(int)" in p.stderr and "examples/stall_example.cpp:" in p.stderr,
          "the report names the function with file:line (no -rdynamic)", p.stderr)
    check("stall ended" not in p.stderr, "strict mode exits before the stall ends", p.stderr)


def test_json_lines():
    p = run_example(["many", "3"], STALLWATCH_LOG_FORMAT="json", STALLWATCH_THRESHOLD_MS="30")
    check(p.returncode == 0, "json run exits 0", p.stderr)
    events = []
    for line in p.stderr.splitlines():
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except ValueError as e:
            check(False, "every stderr line is JSON", f"{e}: {line!r}")
            return
    stalls = [e for e in events if e.get("event") == "stall"]
    ended = [e for e in events if e.get("event") == "stall_ended"]
    check(len(stalls) >= 3, "json: one stall event per stall at least", p.stderr)
    check(len(ended) == 3, "json: three stall_ended events", p.stderr)
    want = {"loop", "fiber", "fiber_name", "kind", "syscall", "wall_ms", "cpu_ms", "threshold_ms", "sample",
            "capture", "stack_id", "seen", "culprit", "frames"}
    check(all(want <= set(s) for s in stalls), "json: stall events carry every field", p.stderr)
    full = [s for s in stalls if s["frames"]]
    check(bool(full), "json: at least one stall event has frames", p.stderr)
    frame_fields = {"pc", "function", "file", "line", "module", "offset", "build_id", "inlined"}
    check(all(frame_fields <= set(f) for s in full for f in s["frames"]), "json: frames carry every field")
    check(any(f["function"].startswith("(anonymous namespace)::compute_for(int)") and f["line"] > 0
              and f["file"].endswith("examples/stall_example.cpp") for s in full for f in s["frames"]),
          "json: the stalled function with file and line", p.stderr)
    check(any(s["culprit"] and "compute_for" in s["culprit"]["function"]
              and s["culprit"]["file"].endswith("examples/stall_example.cpp") and s["culprit"]["line"] > 0
              for s in full),
          "json: the culprit is the stalled function, with file and line", p.stderr)
    # preempted when the machine is too loaded to give the burner a CPU
    check(all(s["kind"] in ("on-cpu", "preempted") and s["threshold_ms"] == 30 for s in stalls),
          "json: kind and threshold", p.stderr)
    check(all(e["samples"] >= 1 and e["wall_ms"] >= 30 for e in ended), "json: stall_ended totals")


def json_events(program, args, **env):
    """Runs program in JSON mode; returns (process, events), events None when
    a stderr line is not a JSON object."""
    full_env = dict(os.environ, STALLWATCH_METRICS_ADDR="off", STALLWATCH_LOG_FORMAT="json", **env)
    p = subprocess.run([program] + args, env=full_env, capture_output=True, text=True, timeout=120)
    events = []
    for line in p.stderr.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            return p, None
        if not isinstance(event, dict) or "event" not in event:
            return p, None
        events.append(event)
    return p, events


def test_json_mode_writes_only_json():
    # Every kind of line stallwatch writes, from the suite's programs: stall
    # reports and their ends, summaries, blocking-call reports, strict exits.
    runs = [
        ("stall reports, ends and a summary", EXAMPLE, ["many", "3"],
         {"STALLWATCH_THRESHOLD_MS": "30", "STALLWATCH_REPORTS_PER_MINUTE": "1"}, {"stall", "stall_ended", "suppressed"}),
        ("a strict-mode stall", EXAMPLE, ["cpu"], {"STALLWATCH_STRICT": "1", "LD_PRELOAD": PROBES_SO},
         {"stall", "strict_exit"}),
        ("blocking-call reports and their summary", BLOCKING_DEMO, ["repeat"],
         {"LD_PRELOAD": PROBES_SO, "STALLWATCH_REPORTS_PER_MINUTE": "1"}, {"blocking_call", "suppressed"}),
        ("every probed call", BLOCKING_DEMO, ["each"], {"LD_PRELOAD": PROBES_SO, "STALLWATCH_REPORTS_PER_MINUTE": "1000"},
         {"blocking_call"}),
        ("a strict-mode blocking call", BLOCKING_DEMO, ["usleep"], {"LD_PRELOAD": PROBES_SO, "STALLWATCH_STRICT": "1"},
         {"blocking_call", "strict_exit"}),
    ]
    for what, program, args, env, expected in runs:
        p, events = json_events(program, args, **env)
        check(events is not None, f"json mode, {what}: every stderr line is a JSON object", p.stderr)
        if events is not None:
            seen = {e["event"] for e in events}
            check(expected <= seen, f"json mode, {what}: has {sorted(expected)}", f"seen {sorted(seen)}\n{p.stderr}")
    # The canary's refusal is stallwatch's line too (the demo then prints the
    # exception it caught, a line of its own).
    p = subprocess.run([BLOCKING_DEMO, "usleep"], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, STALLWATCH_METRICS_ADDR="off", STALLWATCH_LOG_FORMAT="json",
                                STALLWATCH_STRICT="1"))
    first = p.stderr.splitlines()[0] if p.stderr else ""
    check(first.startswith('{"event":"config_error"') and json.loads(first)["message"].startswith("STALLWATCH_STRICT=1"),
          "json mode: the strict-mode canary's refusal is a JSON line", p.stderr)
    p, events = json_events(EXAMPLE, ["cpu"], STALLWATCH_STRICT="1", LD_PRELOAD=PROBES_SO)
    strict = [e for e in events or [] if e["event"] == "strict_exit"]
    check(len(strict) == 1 and strict[0]["exit_status"] == STRICT_EXIT_STATUS and
          strict[0]["message"].startswith("strict mode: ending the process with status 70 after a stall of"),
          "strict mode says why the process ends, in one line", p.stderr)


def test_blocking_call():
    p = run_example(["block"])
    check(p.returncode == 0, "block run exits 0", p.stderr)
    check('"sleepy" blocked in clock_nanosleep for' in p.stderr, "usleep is blocked in clock_nanosleep", p.stderr)
    check("sleep_blocking_for(int)" in p.stderr and "examples/stall_example.cpp:" in p.stderr,
          "the blocking function is named with file:line", p.stderr)


def test_rate_limit_from_environment():
    p = run_example(["many", "4"], STALLWATCH_REPORTS_PER_MINUTE="1")
    reports = [l for l in p.stderr.splitlines() if l.startswith("stallwatch: stall loop=")]
    check(len(reports) == 1, "STALLWATCH_REPORTS_PER_MINUTE=1 lets one report through", p.stderr)
    # Three stalls held back (more if the load stretched one past a second sample).
    summary = re.search(r"stallwatch: suppressed (\d+) stall reports on loop 0 in the last minute", p.stderr)
    check(summary is not None and int(summary.group(1)) >= 3, "the suppressed reports are summarised", p.stderr)


def test_usdt_notes():
    readelf = shutil.which("readelf")
    if readelf is None:
        print("skip readelf -n: readelf not installed")
        return
    notes = subprocess.run([readelf, "-n", LIBRARY], capture_output=True, text=True).stdout
    for name in ("slice_begin", "loop_idle", "fiber_spawn", "fiber_exit", "stall_begin", "stall_end"):
        check(f"Name: {name}" in notes and "Provider: stallwatch" in notes, f"readelf -n shows probe {name}")


def test_bpftrace_attaches():
    bpftrace = shutil.which("bpftrace")
    if bpftrace is None or os.geteuid() != 0:
        print("skip bpftrace: needs the bpftrace package and root")
        return
    script = os.path.join(PROBES, "stalls.bt")
    env = dict(os.environ, STALLWATCH_METRICS_ADDR="off", STALLWATCH_THRESHOLD_MS="30")
    with tempfile.TemporaryFile(mode="w+") as out:
        tracer = subprocess.Popen([bpftrace, script, LIBRARY], stdout=out, stderr=subprocess.STDOUT, env=env)
        # Wait until the probes are attached.
        deadline = time.time() + 60
        while time.time() < deadline:
            out.seek(0)
            if "Attaching" in out.read():
                break
            time.sleep(0.2)
        time.sleep(1.0)
        run_example(["many", "2"], STALLWATCH_THRESHOLD_MS="30")
        time.sleep(1.0)
        tracer.terminate()
        tracer.wait(timeout=30)
        out.seek(0)
        text = out.read()
    if "ERROR" in text and "stall_begin" not in text:
        print("skip bpftrace: it could not attach here:\n" + text)
        return
    check("stall_begin loop=0" in text and "stall_end loop=0" in text, "bpftrace probes/stalls.bt sees stalls", text)


test_strict_mode()
test_json_lines()
test_json_mode_writes_only_json()
test_blocking_call()
test_rate_limit_from_environment()
test_usdt_notes()
test_bpftrace_attaches()
if failures:
    print(f"{len(failures)} check(s) failed")
    sys.exit(1)
print("all checks passed")
