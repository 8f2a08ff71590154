#!/usr/bin/env python3
"""Memory per idle keep-alive connection (bench/http/run.sh MODE=idle).

Opens N connections to 127.0.0.1:PORT, makes one `GET /` on each, reads the
answer and leaves the connection open and idle. Prints the resident set of
the server's processes (the PIDs given, /proc/PID/status VmRSS, summed)
before and 1 s after, as "rss_before_kib|rss_after_kib|connections_open".
Socket buffers are the kernel's and count for no server.

usage: idle_connections.py PORT CONNECTIONS PID...
"""
import selectors
import socket
import sys
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open("/proc/%s/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def open_idle(port, count, batch=500, timeout_s=60):
    """Connects `count` sockets, a batch at a time, each answered once."""
    done = []
    deadline = time.monotonic() + timeout_s
    sel = selectors.DefaultSelector()
    while len(done) < count and time.monotonic() < deadline:
        pending = {}
        for _ in range(min(batch, count - len(done))):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            pending[s] = b""
            sel.register(s, selectors.EVENT_WRITE)
        while pending and time.monotonic() < deadline:
            for key, events in sel.select(timeout=1):
                s = key.fileobj
                if events & selectors.EVENT_WRITE:
                    s.send(REQUEST)
                    sel.modify(s, selectors.EVENT_READ)
                    continue
                data = s.recv(4096)
                if not data:
                    sel.unregister(s)
                    s.close()
                    del pending[s]
                    continue
                pending[s] += data
                if b"\r\n\r\n" in pending[s] and pending[s].endswith(b"hello"):
                    sel.unregister(s)
                    del pending[s]
                    done.append(s)
        for s in pending:
            sel.unregister(s)
            s.close()
    return done


def main():
    port, count, pids = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    before = rss_kib(pids)
    conns = open_idle(port, count)
    time.sleep(1)
    after = rss_kib(pids)
    print("%d|%d|%d" % (before, after, len(conns)))
    for s in conns:
        s.close()


if __name__ == "__main__":
    main()
