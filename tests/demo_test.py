#!/usr/bin/env python3
"""Integration test of stallwatch-demo: endpoints, keep-alive, pipelining,
400/404/405/431, header timeout, stall reports on stderr, SIGTERM/SIGINT drain.

usage: demo_test.py path/to/stallwatch-demo
"""
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

DEMO = sys.argv[1]
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Demo:
    def __init__(self, *args, env=None):
        self.port = free_port()
        self.stderr_file = tempfile.TemporaryFile()
        full_env = dict(os.environ, STALLWATCH_METRICS_ADDR="off", STALLWATCH_THRESHOLD_MS="50")
        full_env.update(env or {})
        self.proc = subprocess.Popen([DEMO, "--port", str(self.port), *args], stdout=subprocess.PIPE,
                                     stderr=self.stderr_file, env=full_env, text=True)
        line = self.proc.stdout.readline()
        if "listening" not in line:
            raise RuntimeError("demo did not start: %r %s" % (line, self.stderr()))

    def stderr(self):
        self.stderr_file.seek(0)
        return self.stderr_file.read().decode(errors="replace")

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return s

    def stop(self, sig=signal.SIGTERM, timeout=15):
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


def read_response(sock, buffered=b""):
    """Reads one response; returns (status, headers dict, body, leftover)."""
    data = buffered
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("closed before a response head: %r" % data)
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("closed mid-body")
        rest += chunk
    return status, headers, rest[:length].decode(), rest[length:]


def request(sock, path, extra=""):
    sock.sendall(("GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n" % (path, extra)).encode())
    status, headers, body, _ = read_response(sock)
    return status, headers, body


def closed_by_peer(sock, within=10):
    sock.settimeout(within)
    try:
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True, data
            data += chunk
    except socket.timeout:
        return False, data
    except ConnectionResetError:
        return True, b""


def test_endpoints(demo):
    s = demo.connect()
    status, headers, body = request(s, "/")
    check(status == 200 and body == "hello", "/ answers 200 hello")
    check(request(s, "/")[0] == 200, "a second request on the same keep-alive connection")
    for path in ("/sleep?ms=30", "/offload?ms=30", "/process?ms=30"):
        status, _, body = request(s, path)
        check(status == 200, "%s answers 200 (%s)" % (path, body.strip()))
    check(request(s, "/cpu?ms=abc")[0] == 400, "a bad ms is 400")
    check(request(s, "/cpu?ms=99999999")[0] == 400, "an out-of-range ms is 400")
    check(request(s, "/nope")[0] == 404, "an unknown path is 404")
    s.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc")
    check(read_response(s)[0] == 405, "POST / is 405 and its body is skipped")
    check(request(s, "/")[0] == 200, "the connection still works after a request with a body")
    s.close()


def test_pipelining(demo):
    s = demo.connect()
    s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET /nope HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
    statuses = []
    leftover = b""
    for _ in range(3):
        status, _, _, leftover = read_response(s, leftover)
        statuses.append(status)
    check(statuses == [200, 404, 200], "pipelined requests are answered in order: %s" % statuses)
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    status, headers, _, _ = read_response(s)
    closed, _ = closed_by_peer(s, 5)
    check(status == 200 and headers.get("connection") == "close" and closed, "HTTP/1.0 without keep-alive is closed after the answer")
    s.close()


def test_errors(demo):
    s = demo.connect()
    s.sendall(b"GARBAGE \x01\x02 nonsense\r\n\r\n")
    status, headers, _, _ = read_response(s)
    closed, _ = closed_by_peer(s, 5)
    check(status == 400 and closed, "a malformed request is 400 and closed")
    s.close()

    s = demo.connect()
    s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
    status, _, _, _ = read_response(s)
    check(status == 431, "a 20 kB header is 431 (got %d)" % status)
    s.close()

    s = demo.connect()
    s.sendall(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    check(read_response(s)[0] == 431, "a 9 kB request line is 431")
    s.close()


def test_half_close_and_reset(demo):
    s = demo.connect()
    s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    s.shutdown(socket.SHUT_WR)  # half-close: the answer must still come
    status, _, body, _ = read_response(s)
    closed, _ = closed_by_peer(s, 5)
    check(status == 200 and body == "hello" and closed, "a half-closed client still gets its answer, then EOF")
    s.close()

    for partial in (b"GET /sleep?ms=200 HTTP/1.1\r\nHost: t\r\n\r\n", b"GET / HT"):
        s = demo.connect()
        s.sendall(partial)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # RST
    time.sleep(0.5)
    s = demo.connect()
    check(request(s, "/")[0] == 200, "the demo keeps serving after clients reset mid-request")
    s.close()


def test_header_timeout(demo):
    slow = demo.connect()
    slow.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")  # never finishes its head
    idle = demo.connect()
    started = time.monotonic()
    closed, data = closed_by_peer(slow, 10)
    check(closed and b" 408 " in data, "a slow client gets 408 and is closed")
    closed, data = closed_by_peer(idle, 10)
    check(closed and data == b"", "an idle connection is closed without a word")
    check(time.monotonic() - started < 10, "both within the header timeout plus slack")


def test_stalls_are_reported(demo):
    s = demo.connect()
    check(request(s, "/cpu?ms=300")[0] == 200, "/cpu?ms=300 answers")
    check(request(s, "/block?ms=300")[0] == 200, "/block?ms=300 answers")
    s.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        err = demo.stderr()
        if "busy_compute" in err and "blocking_sleep" in err:
            break
        time.sleep(0.2)
    err = demo.stderr()
    check("busy_compute" in err and "endpoints.cpp" in err, "the CPU stall is reported naming busy_compute with file:line")
    check("blocking_sleep" in err, "the blocking stall is reported naming blocking_sleep")


def test_cooperative_endpoints_do_not_block(demo):
    results = {}

    def slow(path):
        s = demo.connect()
        results[path] = request(s, path)[0]
        results[path + " done"] = time.monotonic()
        s.close()

    threads = [threading.Thread(target=slow, args=(p,)) for p in ("/sleep?ms=1500", "/offload?ms=1500", "/process?ms=1500")]
    for t in threads:
        t.start()
    time.sleep(0.3)
    s = demo.connect()
    status = request(s, "/")[0]
    hello_done = time.monotonic()
    s.close()
    for t in threads:
        t.join()
    check(status == 200, "/ answers while /sleep, /offload and /process are running")
    check(all(results[p + " done"] > hello_done for p in ("/sleep?ms=1500", "/offload?ms=1500", "/process?ms=1500")),
          "... and before any of them finished")


def test_drain(sig, threads):
    demo = Demo("--threads", str(threads), "--header-timeout-ms", "60000")
    idle = demo.connect()
    check(request(idle, "/")[0] == 200, "drain (%s, %d loops): idle connection set up" % (sig.name, threads))
    busy = demo.connect()
    busy.sendall(b"GET /sleep?ms=1000 HTTP/1.1\r\nHost: t\r\n\r\n")
    time.sleep(0.3)
    demo.proc.send_signal(sig)
    status, headers, _, _ = read_response(busy)
    check(status == 200 and headers.get("connection") == "close", "the busy request finishes with Connection: close")
    closed, _ = closed_by_peer(idle, 10)
    check(closed, "the idle keep-alive connection is closed")
    try:
        code = demo.proc.wait(15)
    except subprocess.TimeoutExpired:
        demo.proc.kill()
        code = None
    check(code == 0, "the demo exits 0 after %s (got %s)" % (sig.name, code))


def test_bad_options():
    r = subprocess.run([DEMO, "--port", "70000"], capture_output=True, text=True, timeout=10)
    check(r.returncode == 2 and "--port '70000'" in r.stderr, "a bad --port is refused naming the value")
    r = subprocess.run([DEMO, "--bogus", "1"], capture_output=True, text=True, timeout=10)
    check(r.returncode == 2 and "unknown option" in r.stderr, "an unknown option is refused")


def main():
    test_bad_options()
    demo = Demo("--header-timeout-ms", "700")
    try:
        test_endpoints(demo)
        test_pipelining(demo)
        test_errors(demo)
        test_half_close_and_reset(demo)
        test_header_timeout(demo)
        test_stalls_are_reported(demo)
        test_cooperative_endpoints_do_not_block(demo)
    finally:
        code = demo.stop()
    check(code == 0, "SIGTERM on an idle demo exits 0")
    test_drain(signal.SIGTERM, 1)
    test_drain(signal.SIGINT, 2)
    if failures:
        print("%d failure(s):\n  %s" % (len(failures), "\n  ".join(failures)))
        return 1
    print("all demo checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
