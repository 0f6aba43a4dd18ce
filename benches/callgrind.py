#!/usr/bin/env python3
"""User-space instructions tcpipe spends per round trip or per connection,
counted by valgrind's callgrind (a count, not a time: steadier than any
clock on a shared machine).

    python3 benches/callgrind.py BINARY rtt|conn [EXTRA FLAGS...]

Runs BINARY under callgrind in front of an echo server twice, with N1 and
N2 round trips of 64 bytes on one pipe (`rtt`) or N1 and N2 short
connections of one round trip each (`conn`), and prints the difference
divided by N2 - N1, so startup and shutdown cancel out. Compare two builds
by running both, interleaved, a few times, and taking medians: how many
events each poll returns still varies a little with timing.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time


def echo_server():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(128)

    def serve(conn):
        while True:
            data = conn.recv(65536)
            if not data:
                break
            conn.sendall(data)
        conn.close()

    def accept():
        while True:
            conn, _ = server.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return server.getsockname()[1]


def free_port():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def round_trip(conn):
    conn.sendall(b"x" * 64)
    got = 0
    while got < 64:
        chunk = conn.recv(64 - got)
        if not chunk:
            raise RuntimeError("the forwarder closed the connection")
        got += len(chunk)


def instructions(binary, mode, n, extra):
    target, port = echo_server(), free_port()
    out = tempfile.mktemp(prefix="tcpipe-callgrind.")
    forwarder = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary,
         "--listen", f"127.0.0.1:{port}", "--target", f"127.0.0.1:{target}", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while True:
        try:
            conn = socket.create_connection(("127.0.0.1", port))
            break
        except OSError:
            if time.time() > deadline or forwarder.poll() is not None:
                raise RuntimeError("the forwarder did not start under valgrind")
            time.sleep(0.1)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if mode == "rtt":
        for _ in range(n):
            round_trip(conn)
        conn.close()
    else:
        conn.close()
        for _ in range(n):
            conn = socket.create_connection(("127.0.0.1", port))
            round_trip(conn)
            conn.close()
    forwarder.send_signal(signal.SIGTERM)
    forwarder.wait(timeout=60)
    with open(out) as summary:
        text = summary.read()
    os.unlink(out)
    found = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
    if not found:
        raise RuntimeError("no totals in callgrind's output")
    return int(found.group(1))


def main():
    if len(sys.argv) < 3 or sys.argv[2] not in ("rtt", "conn"):
        sys.exit(__doc__)
    binary, mode, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
    n1, n2 = (2000, 12000) if mode == "rtt" else (200, 1200)
    per = (instructions(binary, mode, n2, extra) - instructions(binary, mode, n1, extra)) / (n2 - n1)
    unit = "round trip" if mode == "rtt" else "connection"
    print(f"{per:.0f} user-space instructions per {unit}")


if __name__ == "__main__":
    main()
