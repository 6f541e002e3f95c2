"""Load test of ``umt serve`` over loopback: N concurrent clients sending single-post requests.

Starts ``umt serve RUN`` as its own process on a free port, measures the offline rate first
(``umt predict`` over the same posts, in this process, before the server starts, so the two do
not share the cores), then drives the server with ``--clients`` concurrent clients (coroutines
of one thread), each on its own keep-alive connection, each sending one post per request in
turn until ``--requests`` are done or ``--seconds`` have passed (a warm-up of ``--warmup``
requests first, not counted). Also measures, in this process, the model alone tagging the posts
in batches of ``--clients`` consecutive posts, as the server sees them (N closed-loop clients
of one post each can fill no bigger batch): the most the server could serve with free HTTP.
Prints throughput (posts/s, and its ratios to offline and to the model alone), latency
p50 / p95 / p99, errors (any non-200 answer or failed connection), the mean posts per batch
the server ran, and the server's resident
memory (VmRSS) after the warm-up and at the end.

    python benchmarks/bench_serve.py --run runs/twitter2017/bert-crf/seed1 --data-root ../shared/data \\
        --clients 16 --requests 10000
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

import umt
from umt.pipeline.data.layout import load_split
from umt.pipeline.data.new_posts import from_text
from umt.pipeline.serving.app import ServeSettings, Tagging
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


def _health(port: int) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/v1/health")
    return json.loads(connection.getresponse().read())


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
    """Clients sharing a counter of requests to send, each on its own keep-alive connection; all of
    them coroutines of one thread (asyncio), so the load costs the shared cores little: 16 client
    threads competed with the server for the GIL-free cores far more."""

    def __init__(self, port: int, bodies: list[bytes], total: int, seconds: float):
        self.port, self.bodies, self.total, self.seconds = port, bodies, total, seconds
        self.next = 0
        self.latencies: list[float] = []
        self.errors = 0
        self.first_error = ""

    def _take(self) -> int | None:
        if self.next >= self.total or time.monotonic() > self.deadline:
            return None
        self.next += 1
        return self.next - 1

    def _request(self, body: bytes) -> bytes:
        head = "POST /v1/tag HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, bytes]:
        status = int((await reader.readline()).split()[1])
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        return status, await reader.readexactly(length)

    async def client(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        while (k := self._take()) is not None:
            started = time.perf_counter()
            try:
                writer.write(self._request(self.bodies[k % len(self.bodies)]))
                status, data = await asyncio.wait_for(self._answer(reader), 60)
                ok = status == 200
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError, asyncio.TimeoutError) as e:
                ok, data = False, repr(e).encode()
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            self.latencies.append(time.perf_counter() - started)
            if not ok:
                self.errors += 1
                self.first_error = self.first_error or data[:200].decode(errors="replace")
        writer.close()

    def run(self, clients: int) -> float:
        async def all_clients() -> None:
            await asyncio.gather(*(self.client() for _ in range(clients)))

        self.deadline = time.monotonic() + self.seconds
        started = time.perf_counter()
        asyncio.run(all_clients())
        return time.perf_counter() - started


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def model_alone(run: Path, texts: list[str], batch: int, quantize: str) -> float:
    """Posts/s of the server's own batch function over ``texts`` in batches of ``batch``
    consecutive posts, no HTTP (the median of three passes)."""
    tagging = Tagging(umt.load(run, device="cpu", quantize=quantize), ServeSettings())
    items = [(from_text(t, tagging.tagger.style, line=1), None, False) for t in texts]
    tagging.work(items[:batch])  # warm-up
    rates = []
    for _ in range(3):
        started = time.perf_counter()
        for i in range(0, len(items), batch):
            tagging.work(items[i : i + batch])
        rates.append(len(items) / (time.perf_counter() - started))
    return statistics.median(rates)


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
    parser.add_argument(
        "--server-threads", type=int, default=None, help="OMP_NUM_THREADS of the server process (default: inherited)"
    )
    args = parser.parse_args()
    console = Console()
    texts = [" ".join(p.tokens) for p in load_split(args.data_root, args.dataset, "test")]
    bodies = [json.dumps({"text": t}).encode() for t in texts]

    inputs = Path(tempfile.mkdtemp(prefix="bench-serve-")) / "texts.jsonl"
    inputs.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    quantize = "int8" if "int8" in args.serve_args else "none"
    request = PredictRequest(args.run, input=inputs, output=Path(os.devnull), device="cpu", quantize=quantize)
    offline = statistics.median(  # one pass over the posts takes ~2 s: the median of three is steadier
        predict.run(request, console=Console(stderr=True, quiet=True))["posts_per_second"] for _ in range(3)
    )
    alone = model_alone(args.run, texts, args.clients, quantize)

    port = _free_port()
    command = [sys.executable, "-m", "umt.cli", "serve", str(args.run), "--port", str(port), "--device", "cpu"]
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(args.server_threads)} if args.server_threads else {}))
    server = subprocess.Popen(
        command + args.serve_args.split(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    try:
        _wait_ready(port, server)
        rss_start_load = _rss_mib(server.pid)
        Load(port, bodies, args.warmup, args.seconds).run(args.clients)
        rss_warm, before = _rss_mib(server.pid), _health(port)
        load = Load(port, bodies, args.requests, args.seconds)
        seconds = load.run(args.clients)
        rss_end, after = _rss_mib(server.pid), _health(port)
    finally:
        server.terminate()
        server.wait(timeout=30)
    done = len(load.latencies)
    batch = (after["posts"] - before["posts"]) / max(1, after["batches"] - before["batches"])
    rate = done / seconds
    table = Table(title=f"umt serve, {args.clients} clients, single-post requests, {done} measured")
    for column in ("figure", "value"):
        table.add_column(column, justify="right" if column == "value" else "left")
    rows = [
        ("offline umt predict (median of 3)", f"{offline:.1f} posts/s"),
        (f"model alone, batches of {args.clients} posts (median of 3)", f"{alone:.1f} posts/s"),
        ("model alone / offline: the ceiling", f"{alone / offline:.2f}"),
        ("served", f"{rate:.1f} posts/s"),
        ("served / offline", f"{rate / offline:.2f}"),
        ("served / model alone", f"{rate / alone:.2f}"),
        ("posts per batch (mean)", f"{batch:.1f}"),
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
        "model_alone_posts_per_second": alone,
        "served_posts_per_second": rate,
        "ratio": rate / offline,
        "posts_per_batch": batch,
        "p50_ms": 1000 * statistics.median(load.latencies),
        "p95_ms": 1000 * _percentile(load.latencies, 0.95),
        "p99_ms": 1000 * _percentile(load.latencies, 0.99),
        "errors": load.errors,
        "rss_mib": {"start": rss_start_load, "warm": rss_warm, "end": rss_end},
    }
    console.print_json(json.dumps(summary))


if __name__ == "__main__":
    main()
