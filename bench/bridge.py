"""Benchmark: the censor bridge's forwarding rate and added latency (profile `none`).

    .venv/bin/python -m bench.bridge [--seconds 2]

Prints two tables:
- latency: median ICMP RTT from the client to the access router (not through
  the bridge) and to the border router (one bridge crossing each way); the
  difference is what the bridge adds per round trip, and half of it per crossing.
- forwarding: UDP packets offered at fixed rates from the client to a counter on
  the internet side; delivered packets/s and loss. The bridge's rate is the
  highest offered rate delivered with < 1 % loss. Also one bulk TCP transfer.

Targets (issue 2): >= 20,000 packets/s and <= 1 ms of extra median latency.
This machine is noisy and has 2 cores shared by sender, bridge and receiver, so
read the figures side by side, not as absolutes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap

from tamperscope.lab import addresses as A
from tamperscope.lab import manager

RECEIVER = textwrap.dedent("""
    import socket, sys, time, json
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    s.bind(("198.19.0.99", 9999)); s.settimeout(1.5)
    t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind(("198.19.0.99", 9998)); t.listen(1)
    print("ready", flush=True)
    counts = {}
    while True:
        try:
            d = s.recv(2048)
        except socket.timeout:
            break
        k = d[:8]
        counts[k] = counts.get(k, 0) + 1
    c, _ = t.accept(); n = 0; t0 = time.monotonic()
    while True:
        b = c.recv(1 << 20)
        if not b: break
        n += len(b)
    print(json.dumps({"udp": {k.decode(): v for k, v in counts.items()}, "tcp_bytes": n, "tcp_s": time.monotonic() - t0}))
""")

SENDER = textwrap.dedent("""
    import socket, sys, time, json
    rates = [int(x) for x in sys.argv[1].split(",")]; secs = float(sys.argv[2])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 << 20)
    sent = {}
    for rate in rates:
        tag = f"{rate:08d}".encode(); payload = tag + b"x" * 56
        n = int(rate * secs); t0 = time.monotonic(); i = 0
        while i < n:
            due = int((time.monotonic() - t0) * rate) + 1
            while i < min(due, n):
                try:
                    s.sendto(payload, ("198.19.0.99", 9999)); i += 1
                except BlockingIOError:
                    break
            time.sleep(0.0005)
        sent[str(rate).zfill(8)] = (n, time.monotonic() - t0)
        time.sleep(0.3)
    time.sleep(2)
    c = socket.create_connection(("198.19.0.99", 9998)); blob = b"y" * (1 << 20); t0 = time.monotonic()
    for _ in range(int(sys.argv[3])):
        c.sendall(blob)
    c.close()
    print(json.dumps({"sent": sent, "tcp_s": time.monotonic() - t0}))
""")


def ping_median(target: str, count: int) -> float:
    out = manager.run_in(A.NS_CLIENT, ["ping", "-n", "-c", str(count), "-i", "0.005", target],
                         capture_output=True, text=True).stdout
    times = [float(line.split("time=")[1].split()[0]) for line in out.splitlines() if "time=" in line]
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0, help="seconds per offered rate")
    ap.add_argument("--rates", default="10000,20000,40000,60000,80000")
    ap.add_argument("--tcp-mib", type=int, default=200)
    args = ap.parse_args()
    manager.down()
    manager.up("none")
    try:
        direct = ping_median(A.ACCESS_LAN, 400)
        bridged = ping_median(A.BORDER_DOWN, 400)
        print("latency (median ICMP RTT from the client, 400 pings each)")
        print(f"  {'path':38} {'median RTT ms':>14}")
        print(f"  {'client -> access router (no bridge)':38} {direct:14.3f}")
        print(f"  {'client -> border router (bridge x2)':38} {bridged:14.3f}")
        print(f"  {'added by the bridge per round trip':38} {bridged - direct - 0.0:14.3f}   (the border is one more hop: an upper bound)")
        print(f"  {'added per crossing':38} {(bridged - direct) / 2:14.3f}   target <= 1 ms")
        recv = subprocess.Popen(manager.exec_argv([sys.executable, "-c", RECEIVER], A.NS_INET), stdout=subprocess.PIPE, text=True)
        assert recv.stdout is not None
        recv.stdout.readline()
        snd = subprocess.run(manager.exec_argv([sys.executable, "-c", SENDER, args.rates, str(args.seconds), str(args.tcp_mib)], A.NS_CLIENT),
                             capture_output=True, text=True, check=True)
        sent = json.loads(snd.stdout)
        got = json.loads(recv.stdout.readline())
        recv.wait(timeout=30)
        print("\nforwarding (64-byte UDP payloads, client -> internet, through the bridge)")
        print(f"  {'offered pps':>12} {'sent pps':>10} {'delivered pps':>14} {'loss %':>8}")
        best = 0
        for tag, (n, secs) in sent["sent"].items():
            delivered = got["udp"].get(tag, 0)
            loss = 100.0 * (n - delivered) / n
            print(f"  {int(tag):12d} {n / secs:10.0f} {delivered / secs:14.0f} {loss:8.2f}")
            if loss < 1.0:
                best = max(best, int(n / secs))
        print(f"  bridge rate (highest with < 1 % loss): {best} packets/s   target >= 20000")
        mbit = got["tcp_bytes"] * 8 / 1e6 / sent["tcp_s"]
        print(f"\nbulk TCP through the bridge: {got['tcp_bytes'] / 2**20:.0f} MiB in {sent['tcp_s']:.2f} s = {mbit:.0f} Mbit/s "
              f"(~{mbit * 1e6 / 8 / 1500 * 1.03:.0f} full-size packets/s, plus ACKs)")
    finally:
        manager.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
