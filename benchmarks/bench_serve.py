"""Load test of ``umt serve`` over loopback: N concurrent clients sending single-post requests.

Starts ``umt serve RUN`` as its own process on a free port, measures the offline rate first
(``umt predict`` over the same posts, in this process, before the server starts, so the two do
not share the cores), then drives the server with ``--clients`` threads, each on its own
keep-alive connection, each sending one post per request in turn until ``--requests`` are done
or ``--seconds`` have passed (a warm-up of ``--warmup`` requests first, not counted). Prints
throughput (posts/s, and its ratio to offline), latency p50 / p95 / p99, errors (any non-200
answer or failed connection) and the server's resident memory (VmRSS) after the warm-up and at
the end.

    python benchmarks/bench_serve.py --run runs/twitter2017/bert-crf/seed1 --data-root ../shared/data \\
        --clients 16 --requests 10000
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from umt.pipeline.data.layout import load_split
from umt.stages import predict
from umt.stages.requests import PredictRequest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _wait_ready(port: int, server: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with status {server.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/v1/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("the server did not come up")


class Load:
    """Clients sharing a counter of requests to send; each records its latencies and errors."""

    def __init__(self, port: int, bodies: list[bytes], total: int, seconds: float):
        self.port, self.bodies, self.total, self.seconds = port, bodies, total, seconds
        self.next = 0
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.errors = 0
        self.first_error = ""

    def _take(self) -> int | None:
        with self.lock:
            if self.next >= self.total or time.monotonic() > self.deadline:
                return None
            self.next += 1
            return self.next - 1

    def client(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        mine: list[float] = []
        while (k := self._take()) is not None:
            body = self.bodies[k % len(self.bodies)]
            started = time.perf_counter()
            try:
                connection.request("POST", "/v1/tag", body, {"Content-Type": "application/json"})
                answer = connection.getresponse()
                data = answer.read()
                ok = answer.status == 200
            except OSError as e:
                ok, data = False, str(e).encode()
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            mine.append(time.perf_counter() - started)
            if not ok:
                with self.lock:
                    self.errors += 1
                    self.first_error = self.first_error or data[:200].decode(errors="replace")
        with self.lock:
            self.latencies += mine

    def run(self, clients: int) -> float:
        self.deadline = time.monotonic() + self.seconds
        threads = [threading.Thread(target=self.client) for _ in range(clients)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - started


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--dataset", default="twitter2017")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=600, help="stop the measured phase after this long")
    parser.add_argument("--serve-args", default="", help="extra options for umt serve, e.g. '--quantize int8'")
    args = parser.parse_args()
    console = Console()
    texts = [" ".join(p.tokens) for p in load_split(args.data_root, args.dataset, "test")]
    bodies = [json.dumps({"text": t}).encode() for t in texts]

    inputs = Path(tempfile.mkdtemp(prefix="bench-serve-")) / "texts.jsonl"
    inputs.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    quantize = "int8" if "int8" in args.serve_args else "none"
    offline = predict.run(
        PredictRequest(args.run, input=inputs, output=Path(os.devnull), device="cpu", quantize=quantize),
        console=Console(stderr=True, quiet=True),
    )["posts_per_second"]

    port = _free_port()
    command = [sys.executable, "-m", "umt.cli", "serve", str(args.run), "--port", str(port), "--device", "cpu"]
    server = subprocess.Popen(command + args.serve_args.split(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_ready(port, server)
        rss_start_load = _rss_mib(server.pid)
        Load(port, bodies, args.warmup, args.seconds).run(args.clients)
        rss_warm = _rss_mib(server.pid)
        load = Load(port, bodies, args.requests, args.seconds)
        seconds = load.run(args.clients)
        rss_end = _rss_mib(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    done = len(load.latencies)
    rate = done / seconds
    table = Table(title=f"umt serve, {args.clients} clients, single-post requests, {done} measured")
    for column in ("figure", "value"):
        table.add_column(column, justify="right" if column == "value" else "left")
    rows = [
        ("offline umt predict", f"{offline:.1f} posts/s"),
        ("served", f"{rate:.1f} posts/s"),
        ("served / offline", f"{rate / offline:.2f}"),
        ("latency p50", f"{1000 * statistics.median(load.latencies):.1f} ms"),
        ("latency p95", f"{1000 * _percentile(load.latencies, 0.95):.1f} ms"),
        ("latency p99", f"{1000 * _percentile(load.latencies, 0.99):.1f} ms"),
        ("errors", f"{load.errors}" + (f" (first: {load.first_error})" if load.errors else "")),
        ("server RSS at start", f"{rss_start_load:.0f} MiB"),
        ("server RSS after warm-up", f"{rss_warm:.0f} MiB"),
        ("server RSS at end", f"{rss_end:.0f} MiB"),
        ("RSS growth after warm-up", f"{100 * (rss_end - rss_warm) / rss_warm:+.1f}%"),
    ]
    for row in rows:
        table.add_row(*row)
    console.print(table)
    summary = {
        "clients": args.clients,
        "requests": done,
        "offline_posts_per_second": offline,
        "served_posts_per_second": rate,
        "ratio": rate / offline,
        "p50_ms": 1000 * statistics.median(load.latencies),
        "p95_ms": 1000 * _percentile(load.latencies, 0.95),
        "p99_ms": 1000 * _percentile(load.latencies, 0.99),
        "errors": load.errors,
        "rss_mib": {"start": rss_start_load, "warm": rss_warm, "end": rss_end},
    }
    console.print_json(json.dumps(summary))


if __name__ == "__main__":
    main()
