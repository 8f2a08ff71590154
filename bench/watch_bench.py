#!/usr/bin/env python3
"""What the watch (stallwatch-watch, libstallwatch-watch.so) costs a healthy loop.

1. Per wait: examples/watch/busy_poll.c times 2,000,000 empty zero-timeout
   epoll_wait calls, plain and watched, in alternating pairs.
2. Redis: redis-benchmark -t set,get against a plain redis-server and one
   under stallwatch-watch, started in turn on 127.0.0.1 (each in its own temp
   dir, no persistence), in alternating rounds; requests per second, the
   watched/plain ratio of each round, and the median. On a shared, loaded
   machine throughput swings with the load, so the server's own CPU time per
   request (user + system, all its threads, watchdog included, from
   /proc/PID/stat) is given too: what the watch costs a CPU-bound server.

usage: bench/watch_bench.py BUILD_DIR [ROUNDS] [REQUESTS]
"""
import csv
import io
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BUILD = sys.argv[1]
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
REQUESTS = int(sys.argv[3]) if len(sys.argv) > 3 else 200000
WATCH = os.path.join(BUILD, "src", "watch", "preload", "stallwatch-watch")
BUSY_POLL = os.path.join(BUILD, "examples", "watch", "stallwatch-watch-busy-poll")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """User + system time of process pid, all its threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def per_wait(watched):
    cmd = ([WATCH, "--metrics-addr", "off", "--"] if watched else []) + [BUSY_POLL, "2000000"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return float(out.split()[0])


def redis_round(watched):
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                  "--dir", tmp, "--logfile", os.path.join(tmp, "log")]
        if watched:
            server = [WATCH, "--metrics-addr", f"127.0.0.1:{free_port()}", "--"] + server
        proc = subprocess.Popen(server, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                r = subprocess.run(["redis-cli", "-p", str(port), "PING"], capture_output=True, text=True)
                if r.stdout.strip() == "PONG":
                    break
                time.sleep(0.1)
            cpu_before = cpu_seconds(proc.pid)
            out = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", "set,get",
                                  "-n", str(REQUESTS), "-c", "50", "--csv"],
                                 capture_output=True, text=True, check=True).stdout
            cpu = cpu_seconds(proc.pid) - cpu_before
        finally:
            subprocess.run(["redis-cli", "-p", str(port), "SHUTDOWN", "NOSAVE"], capture_output=True)
            proc.wait(timeout=30)
    rows = {row[0]: float(row[1]) for row in csv.reader(io.StringIO(out)) if row and row[0] in ("SET", "GET")}
    return rows["SET"], rows["GET"], cpu / (2 * REQUESTS) * 1e6


print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
plain, watched = [], []
for _ in range(5):
    plain.append(per_wait(False))
    watched.append(per_wait(True))
print("empty epoll_wait, ns of the thread's CPU time per call, 5 alternating pairs:")
print(f"  plain   {' '.join(f'{x:.0f}' for x in plain)}  median {statistics.median(plain):.0f}")
print(f"  watched {' '.join(f'{x:.0f}' for x in watched)}  median {statistics.median(watched):.0f}")
print(f"  the watch adds {statistics.median(watched) - statistics.median(plain):.0f} ns per wait (median difference)")

if shutil.which("redis-benchmark") is None:
    sys.exit("redis-benchmark is missing (redis-tools)")
ratios = {"SET": [], "GET": []}
cpu = {"plain": [], "watched": []}
print(f"\nredis-benchmark -t set,get -n {REQUESTS} -c 50, requests per second, {ROUNDS} alternating rounds:")
print("| round | SET plain | SET watched | ratio | GET plain | GET watched | ratio | server CPU µs/request plain | watched |")
print("|---|---|---|---|---|---|---|---|---|")
for i in range(ROUNDS):
    p = redis_round(False)
    w = redis_round(True)
    ratios["SET"].append(w[0] / p[0])
    ratios["GET"].append(w[1] / p[1])
    cpu["plain"].append(p[2])
    cpu["watched"].append(w[2])
    print(f"| {i + 1} | {p[0]:.0f} | {w[0]:.0f} | {w[0] / p[0]:.3f} | {p[1]:.0f} | {w[1]:.0f} | {w[1] / p[1]:.3f} "
          f"| {p[2]:.2f} | {w[2]:.2f} |")
for test in ("SET", "GET"):
    print(f"{test}: median watched/plain {statistics.median(ratios[test]):.3f}")
print(f"server CPU per request: median plain {statistics.median(cpu['plain']):.2f} µs, watched "
      f"{statistics.median(cpu['watched']):.2f} µs, ratio "
      f"{statistics.median(cpu['watched']) / statistics.median(cpu['plain']):.3f}")
print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
