#!/usr/bin/env python3
"""The watch on real programs that know nothing of stallwatch
(stallwatch-watch -- CMD, LD_PRELOAD=libstallwatch-watch.so):

- asyncio (examples/watch/asyncio_*.py): coroutines on asyncio.sleep give
  no on-cpu or blocked report and the same output as unwatched; time.sleep(0.5)
  in a coroutine is reported `blocked in clock_nanosleep`, in text and JSON;
  strict mode ends it with status 70; a program that exits during a stall
  exits with its own status; asyncio.run twice; a handler of the program's
  on SIGRTMIN+4 is left alone (the watch takes SIGRTMIN+5);
- Boost.Asio: a handler computing 300 ms is reported with compute_for() at
  its file:line on the head line; a healthy run gives no such report;
- libevent: a callback's private poll() is a blocked call inside the slice,
  reported `blocked in poll` at the callback's line, and not cut short;
- fork and exec: the forked child's loop is watched, the exec'd shell runs,
  each exits with its own status;
- a raw-syscall loop, and an io_uring set up by syscall(2), are said to be
  unwatchable in one line;
- a real redis-server: DEBUG SLEEP 0.5 is blocked, a long EVAL computes,
  both counted in its /metrics; daemonized (--daemonize yes), its daemon's
  loop is watched and serves /metrics;
- a Node.js server with a busy handler is reported;
- bad options are refused with a clear error.

A healthy program may still be preempted on this shared machine: a
`preempted` report is the OS's doing and says so; healthy cases check that no
on-cpu or blocked report comes. Likewise a computing handler that the OS
preempts for more than half of its time is reported `preempted`, with the
same stack: the compute cases accept on-cpu or preempted and check the stack.

In a sanitized build (-Db_sanitize=address,undefined) the same cases run
with the sanitized watch, so an ASan or UBSan report fails them.

usage: watch_test.py <build dir> <source dir>
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

BUILD, SOURCE = sys.argv[1:3]
WATCH = os.path.join(BUILD, "src", "watch", "preload", "stallwatch-watch")
EXAMPLES = os.path.join(BUILD, "examples", "watch")
SCRIPTS = os.path.join(SOURCE, "examples", "watch")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

failures = []


def sanitizer_runtime():
    """The AddressSanitizer runtime the watch library was built with, or None.
    A sanitized libstallwatch-watch.so needs it loaded first: the watched
    programs get it in LD_PRELOAD before the watch (the launcher keeps it
    there), with leak checking off (the interpreters keep their memory)."""
    lib = os.path.join(BUILD, "src", "watch", "preload", "libstallwatch-watch.so")
    out = subprocess.run(["ldd", lib], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if "libasan" in line and "=>" in line:
            return line.split("=>")[1].split()[0]
    return None


ASAN = sanitizer_runtime()
WATCH_ENV = {"LD_PRELOAD": ASAN, "ASAN_OPTIONS": "detect_leaks=0"} if ASAN else {}


def check(ok, what, detail=""):
    if ok:
        print(f"ok: {what}")
    else:
        failures.append(what)
        print(f"FAIL: {what}\n{detail}", file=sys.stderr)


def run(cmd, env=None, timeout=60):
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env)


def watched(args, cmd, env=None, timeout=60):
    return run([WATCH, "--metrics-addr", "off", *args, "--", *cmd], {**WATCH_ENV, **(env or {})}, timeout)


STALL = re.compile(r"^stallwatch: stall loop=(\d+) fiber=0 \"([^\"]*)\" (on-cpu|preempted|blocked in (\S+)) "
                   r"for (\d+) ms in (.*?) \(cpu", re.M)


def stalls(stderr):
    """(loop, thread, kind, syscall, ms, culprit) of each stall report's head line."""
    return STALL.findall(stderr)


def line_of(path, marker):
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if marker in line:
                return number
    raise SystemExit(f"no {marker!r} in {path}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def case_asyncio():
    healthy = os.path.join(SCRIPTS, "asyncio_healthy.py")
    plain = run([PYTHON, healthy])
    w = watched([], [PYTHON, healthy])
    check(w.returncode == 0 and w.stdout == plain.stdout and plain.stdout.count("\n") == 11,
          "asyncio.sleep: output unchanged under the watch", w.stdout + w.stderr)
    bad = [s for s in stalls(w.stderr) if s[2] != "preempted"]
    check(not bad, "asyncio.sleep: no on-cpu or blocked report", w.stderr)
    check(len([l for l in w.stderr.splitlines()
               if l.startswith("stallwatch: watching the epoll/poll/select loops of python3")]) == 1,
          "the watch says what it watches in one line", w.stderr)

    # Port 0: the line gives the port the endpoint bound, and no second line
    # repeats it; a port in use is said as not served, after the reason.
    w = run([WATCH, "--metrics-addr", "127.0.0.1:0", "--", PYTHON, healthy], WATCH_ENV)
    bound = re.search(r"^stallwatch: watching the .* metrics http://127\.0\.0\.1:(\d+)/metrics, ", w.stderr, re.M)
    check(bound and int(bound.group(1)) != 0 and "stallwatch: metrics at" not in w.stderr,
          "metrics-addr 127.0.0.1:0: the one line names the bound port", w.stderr)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        w = run([WATCH, "--metrics-addr", f"127.0.0.1:{taken.getsockname()[1]}", "--", PYTHON, healthy], WATCH_ENV)
    check(re.search(r"metrics endpoint not started .*Address already in use.*\n"
                    r"stallwatch: watching the .* metrics not served, ", w.stderr) and w.returncode == 0,
          "metrics port in use: the reason, then the watch line says not served", w.stderr)

    blocking = os.path.join(SCRIPTS, "asyncio_blocking.py")
    plain = run([PYTHON, blocking])
    w = watched([], [PYTHON, blocking])
    found = stalls(w.stderr)
    check(w.returncode == 0 and w.stdout == plain.stdout, "time.sleep: output unchanged", w.stdout + w.stderr)
    check(any(s[2].startswith("blocked in") and s[3] in ("clock_nanosleep", "nanosleep", "select") and
              s[1] == "python3" for s in found),
          "time.sleep(0.5) in a coroutine: a `blocked in clock_nanosleep` report on thread python3", w.stderr)
    check(re.search(r"stall ended loop=\d+ fiber=0 \"python3\" after (4\d\d|5\d\d|6\d\d) ms", w.stderr),
          "time.sleep(0.5): the stall ends after about 500 ms", w.stderr)

    w = watched(["--json"], [PYTHON, blocking])
    reports = [json.loads(l) for l in w.stderr.splitlines() if l.startswith("{") and '"stall"' in l]
    check(any(r.get("kind") == "blocked" and r.get("fiber_name") == "python3" for r in reports),
          "--json: the blocked report as a JSON line", w.stderr)

    w = watched([], [PYTHON, blocking], env={"STALLWATCH_STRICT": "1"})
    check(w.returncode == 70 and "strict mode" in w.stderr, "strict mode: the first stall ends the process with 70",
          f"rc={w.returncode}\n{w.stderr}")

    # asyncio.run twice, the second loop's epoll on another descriptor number:
    # closing the first one hands the loop over, so the second loop's waits are
    # its idle time, not blocking calls inside one long slice.
    program = ("import asyncio, time\n"
               "async def quick():\n"
               "    await asyncio.sleep(0.01)\n"
               "async def blocking():\n"
               "    await asyncio.sleep(0.01)\n"
               "    time.sleep(0.3)\n"
               "    await asyncio.sleep(0.01)\n"
               "asyncio.run(quick())\n"
               "extra = open('/dev/null')  # takes the first loop's epoll descriptor number\n"
               "asyncio.run(blocking())\n"
               "print('done')\n")
    w = watched([], [PYTHON, "-c", program])
    found = stalls(w.stderr)
    check(w.returncode == 0 and any(s[3] in ("clock_nanosleep", "nanosleep", "select") for s in found) and
          not any(s[3].startswith("epoll") for s in found) and
          re.search(r"stall ended loop=\d+ fiber=0 \"python3\" after [23]\d\d ms", w.stderr),
          "asyncio.run twice: the second loop's epoll is the loop's wait; its time.sleep(0.3) is the stall",
          w.stderr)

    # The program's own handler on SIGRTMIN+4 (the first the watch would
    # take): the watch takes the next free signal and the handler never runs.
    program = ("import asyncio, signal, time\n"
               "got = []\n"
               "signal.signal(signal.SIGRTMIN + 4, lambda *a: got.append(1))\n"
               "async def main():\n"
               "    await asyncio.sleep(0.01)\n"
               "    end = time.monotonic() + 0.3\n"
               "    while time.monotonic() < end: pass\n"
               "asyncio.run(main())\n"
               "print('handler ran', len(got), 'times')\n")
    w = watched([], [PYTHON, "-c", program])
    check(w.returncode == 0 and w.stdout == "handler ran 0 times\n" and "capture signal SIGRTMIN+5" in w.stderr and
          any(s[2] in ("on-cpu", "preempted") for s in stalls(w.stderr)),
          "the program's handler on SIGRTMIN+4 is left alone: the watch captures with SIGRTMIN+5",
          w.stdout + w.stderr)

    # The program ends while its stall is being sampled: its own status.
    for how, code in (("sys.exit(3)", 3), ("os._exit(4)", 4)):
        program = ("import asyncio, os, sys, time\n"
                   "async def main():\n"
                   "    end = time.monotonic() + 0.12\n"
                   "    while time.monotonic() < end: pass\n"
                   f"    {how}\n"
                   "asyncio.run(main())\n")
        w = watched(["--threshold-ms", "10"], [PYTHON, "-c", program])
        check(w.returncode == code, f"exit mid-stall with {how}: status {code}", f"rc={w.returncode}\n{w.stderr}")


def case_asio():
    program = os.path.join(EXAMPLES, "stallwatch-watch-asio")
    line = line_of(os.path.join(SCRIPTS, "asio_timers.cpp"), "x = x * 6364136223846793005ul")
    w = watched([], [program, "busy"])
    found = stalls(w.stderr)
    check(w.returncode == 0 and w.stdout == "10 ticks\n", "Boost.Asio busy: runs to its end", w.stdout + w.stderr)
    check(any(s[2] in ("on-cpu", "preempted") and "compute_for" in s[5] and f"asio_timers.cpp:{line}" in s[5]
              for s in found),
          f"Boost.Asio: the 300 ms handler reported computing, compute_for at asio_timers.cpp:{line} on the head line",
          w.stderr)
    check(any(s[2] == "on-cpu" for s in found) or os.getloadavg()[0] > 2,
          "Boost.Asio: on-cpu (unless the machine is loaded enough to preempt it)", w.stderr)
    w = watched([], [program])
    bad = [s for s in stalls(w.stderr) if s[2] != "preempted"]
    check(w.returncode == 0 and not bad, "Boost.Asio healthy: no on-cpu or blocked report", w.stderr)


def case_libevent():
    program = os.path.join(EXAMPLES, "stallwatch-watch-libevent")
    if not os.path.exists(program):
        print("skip: libevent example not built (libevent-dev missing)")
        return
    line = line_of(os.path.join(SCRIPTS, "libevent_timers.c"), "const int ready = poll(NULL, 0, 300)")
    w = watched([], [program])
    check(w.returncode == 0 and "0 waits cut short" in w.stdout,
          "libevent: the callback's poll lasted its full 300 ms under the watch", w.stdout + w.stderr)
    check(any(s[2] == "blocked in poll" and f"on_tick at " in s[5] and f"libevent_timers.c:{line}" in s[5]
              for s in stalls(w.stderr)),
          f"libevent: a private poll is `blocked in poll` at libevent_timers.c:{line}", w.stderr)


def case_fork_exec():
    w = watched([], [os.path.join(EXAMPLES, "stallwatch-watch-fork-exec")])
    check(w.returncode == 0 and "forked loop exited 5, exec'd shell exited 7" in w.stdout,
          "fork and exec under the watch: each child exits with its own status", w.stdout + w.stderr)
    check(" parent_stall " in w.stderr and " child_stall " in w.stderr,
          "fork: the parent's 400 ms and the forked child's 200 ms stalls are both reported", w.stderr)


def case_raw_syscall():
    w = watched([], [os.path.join(EXAMPLES, "stallwatch-watch-raw-syscall")])
    lines = [l for l in w.stderr.splitlines() if "cannot see" in l]
    check(w.returncode == 0 and w.stdout == "5 raw waits\n" and len(lines) == 1 and
          "raw epoll_wait system calls" in lines[0],
          "raw syscall waits: said unwatchable in one line, once", w.stderr)


def case_io_uring():
    w = watched([], [os.path.join(EXAMPLES, "stallwatch-watch-io-uring")])
    lines = [l for l in w.stderr.splitlines() if "cannot see" in l]
    check(w.returncode == 0 and w.stdout.startswith("io_uring_setup: ") and len(lines) == 1 and
          "waits through io_uring" in lines[0], "io_uring: said unwatchable in one line", w.stderr)


def redis_programs():
    """redis-server and redis-cli, or (None, None) with a line saying so."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        print("skip: redis-server or redis-cli missing")
        return None, None
    return server, cli


def case_redis_daemon():
    """daemon(): redis-server --daemonize yes forks and its parent exits; the
    daemon's loop is watched (wired at its first wait, after the fork) and
    its /metrics served by the daemon."""
    server, cli = redis_programs()
    if server is None:
        return
    port, metrics_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        pidfile = os.path.join(tmp, "redis.pid")
        r = run([WATCH, "--metrics-addr", f"127.0.0.1:{metrics_port}", "--", server, "--port", str(port),
                 "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp, "--daemonize", "yes",
                 "--pidfile", pidfile, "--enable-debug-command", "yes", "--logfile", os.path.join(tmp, "log")],
                WATCH_ENV)
        check(r.returncode == 0, "redis --daemonize yes: the launching process exits 0", r.stderr)
        text = ""
        try:
            for _ in range(100):
                if subprocess.run([cli, "-p", str(port), "PING"], capture_output=True, text=True).stdout.strip() \
                        == "PONG":
                    break
                time.sleep(0.1)
            subprocess.run([cli, "-p", str(port), "DEBUG", "SLEEP", "0.3"], capture_output=True, timeout=30)
            time.sleep(0.3)
            text = scrape(metrics_port)
        except OSError as e:
            text = str(e)
        finally:
            subprocess.run([cli, "-p", str(port), "SHUTDOWN", "NOSAVE"], capture_output=True, timeout=30)
            for _ in range(100):
                if not os.path.exists(pidfile):
                    break
                time.sleep(0.1)
    # Any kind: that the daemon is watched and serves is the point here (its
    # kind is checked by case_redis; under ASan at load 20 one came out on-cpu).
    stalls_counted = sum(int(n) for n in re.findall(r'stallwatch_stalls_total\{loop="\d+",kind="\w+"\} (\d+)', text))
    check(stalls_counted >= 1, "redis --daemonize yes: the daemon's DEBUG SLEEP counted in its own /metrics",
          "\n".join(l for l in text.splitlines() if l.startswith("stallwatch_")))


def case_options():
    r = run([WATCH, "--threshold-ms", "0", "--", "true"])
    check(r.returncode == 2 and "STALLWATCH_THRESHOLD_MS=\"0\"" in r.stderr and "1 to 600000" in r.stderr,
          "--threshold-ms 0 is refused, naming the variable and the range", r.stderr)
    r = run([WATCH, "--frobnicate", "--", "true"])
    check(r.returncode == 2 and "unknown option --frobnicate" in r.stderr, "an unknown option is refused", r.stderr)
    r = run([WATCH, "--"])
    check(r.returncode == 2 and "no command" in r.stderr, "no command is refused", r.stderr)
    r = run([WATCH, "--metrics-addr", "off", "--", "sh", "-c", "exit 9"], WATCH_ENV)
    check(r.returncode == 9 and r.stderr == "", "a program that never waits: its status, not a word", r.stderr)


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def metric(text, name, labels):
    m = re.search(re.escape(name) + r"\{" + re.escape(labels) + r"\} (\S+)", text)
    return float(m.group(1)) if m else None


def case_redis():
    server, cli = redis_programs()
    if server is None:
        return
    port, metrics_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        err = open(os.path.join(tmp, "stderr"), "w+")
        proc = subprocess.Popen(
            [WATCH, "--metrics-addr", f"127.0.0.1:{metrics_port}", "--", server, "--port", str(port), "--bind",
             "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp, "--enable-debug-command", "yes",
             "--logfile", os.path.join(tmp, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, **WATCH_ENV})
        try:
            def cli_run(*args):
                return subprocess.run([cli, "-h", "127.0.0.1", "-p", str(port), *args], capture_output=True,
                                      text=True, timeout=30)
            for _ in range(100):
                if cli_run("PING").stdout.strip() == "PONG":
                    break
                time.sleep(0.1)
            check(cli_run("DEBUG", "SLEEP", "0.5").stdout.strip() == "OK", "redis: DEBUG SLEEP 0.5 answers OK")
            check(cli_run("EVAL", "local i=0 while i<30000000 do i=i+1 end return i", "0").stdout.strip() ==
                  "30000000", "redis: the long EVAL answers")
            time.sleep(0.3)  # the watchdog ends the second stall on its next tick
            text = scrape(metrics_port)
        finally:
            subprocess.run([cli, "-h", "127.0.0.1", "-p", str(port), "SHUTDOWN", "NOSAVE"], capture_output=True,
                           timeout=30)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        err.seek(0)
        stderr = err.read()
    found = stalls(stderr)
    check(any(s[1] == "redis-server" and s[2].startswith("blocked in") and "nanosleep" in s[3] for s in found),
          "redis: DEBUG SLEEP 0.5 reported blocked in nanosleep on thread redis-server", stderr)
    check(any(s[1] == "redis-server" and s[2] in ("on-cpu", "preempted") for s in found),
          "redis: the EVAL loop reported computing (on-cpu, or preempted on a loaded machine)", stderr)
    loop = next((s[0] for s in found if s[1] == "redis-server"), "0")
    blocked = metric(text, "stallwatch_stalls_total", f'loop="{loop}",kind="blocked"')
    cpu = (metric(text, "stallwatch_stalls_total", f'loop="{loop}",kind="cpu"') or 0) + \
        (metric(text, "stallwatch_stalls_total", f'loop="{loop}",kind="preempted"') or 0)
    slices = metric(text, "stallwatch_slices_total", f'loop="{loop}"')
    check(blocked is not None and blocked >= 1 and cpu >= 1 and slices is not None and slices >= 3,
          f"redis: /metrics counts both stalls of loop {loop} (blocked {blocked}, cpu+preempted {cpu}, "
          f"slices {slices})", text[:3000])
    loops = re.findall(r'^stallwatch_slices_total\{loop="(\d+)"\}', text, re.M)
    check(loops == [loop], "redis: its one loop is the only one (the metrics server's threads are not loops)",
          "\n".join(l for l in text.splitlines() if l.startswith("stallwatch_slices_total")) + "\n" + stderr)
    check(proc.returncode == 0, "redis: SHUTDOWN ends it with status 0", str(proc.returncode))


def case_node():
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        print("skip: node missing")
        return
    port = free_port()
    proc = subprocess.Popen([WATCH, "--metrics-addr", "off", "--", node, os.path.join(SCRIPTS, "node_busy_server.js"),
                             str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **WATCH_ENV})
    try:
        ready = proc.stdout.readline()
        check(ready.startswith("listening"), "node: the server listens", ready)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/busy", timeout=30) as r:
            check(r.read() == b"busy done\n", "node: /busy answers")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/quit", timeout=30) as r:
            r.read()
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    check(proc.returncode == 0, "node: ends with status 0", str(proc.returncode))
    check(any(s[1] == "node" and s[2] in ("on-cpu", "preempted") for s in stalls(stderr)),
          "node: the busy handler is reported on the node thread", stderr)


for case in (case_options, case_asyncio, case_asio, case_libevent, case_fork_exec, case_raw_syscall, case_io_uring,
             case_redis, case_redis_daemon, case_node):
    case()

print(f"{len(failures)} failed" if failures else "all passed")
sys.exit(1 if failures else 0)
