"""Load test of `crawl2chat serve`: N clients for T seconds, normal and hostile, on 127.0.0.1 only.

Starts the real server (`python -m crawl2chat.cli serve`, a subprocess on a free
loopback port) over a model (default: the GENERATED toy model of tests/support/toy.py,
trained here in ~20 s), then runs N concurrent clients for T seconds, each
picking at random (seeded) among:
  normal     a short chat completion (max_tokens 16)
  stream     the same, streamed, read to the end
  abandoned  a stream closed after its first two events (a closed browser tab)
  hostile    one of: bad values (seed 2**64, temperature 1e-45, top_p 1e-300,
             "stream": "yes", a number as text part), NaN in JSON, a lone surrogate,
             a 2 MB body, bytes that are not JSON
and samples /health throughout. Prints latency p50/p95/p99 per kind, throughput,
responses by status, /health latency, the server's RSS before and after, the
time it took to go idle and to shut down on SIGINT. It fails (exit 1) unless,
afterwards, the server answers a normal request within 3× its baseline latency
(+0.5 s for a busy machine), nothing is left in flight, and no request got a 500.

Bounded: at most 64 clients, 300 s and 20,000 requests.

    .venv/bin/python benchmarks/serve_load.py                       # 8 clients, 30 s, toy model
    .venv/bin/python benchmarks/serve_load.py --clients 16 --seconds 60 --model runs/demo/sft/final
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import psutil

# The repo root on the path: the server launcher and the default model's trainer are test helpers
# (tests.support.serve, tests.support.toy), not library code.
REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.serve import start_server  # noqa: E402

HOST = "127.0.0.1"  # never anything else: this sends hostile traffic
MAX_CLIENTS, MAX_SECONDS, MAX_REQUESTS = 64, 300, 20_000
MSG = [{"role": "user", "content": "What is 12+7?"}]
NORMAL = {"messages": MSG, "max_tokens": 16, "temperature": 0.7}
HOSTILE = [
    json.dumps({**NORMAL, "seed": 2**64}).encode(),
    json.dumps({**NORMAL, "temperature": 1e-45}).encode(),
    json.dumps({**NORMAL, "top_p": 1e-300}).encode(),
    json.dumps({**NORMAL, "stream": "yes"}).encode(),
    json.dumps({**NORMAL, "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}).encode(),
    b'{"messages": [{"role": "user", "content": "x"}], "temperature": NaN}',
    b'{"messages": [{"role": "user", "content": "\\ud800"}]}',
    b'{"messages": [{"role": "user", "content": "' + b"x" * (2 << 20) + b'"}]}',
    b"\x00\xff not json",
]
KINDS = [("normal", 40), ("stream", 25), ("abandoned", 15), ("hostile", 20)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q / 100 * len(xs)))]


async def _one(client: httpx.AsyncClient, url: str, kind: str, rng: random.Random) -> tuple[int, int]:
    """Run one request of `kind`; returns (status, completion tokens or events read)."""
    endpoint = f"{url}/v1/chat/completions"
    if kind == "normal":
        r = await client.post(endpoint, json=NORMAL)
        return r.status_code, (r.json().get("usage", {}).get("completion_tokens", 0) if r.status_code == 200 else 0)
    if kind == "hostile":
        r = await client.post(endpoint, content=rng.choice(HOSTILE), headers={"Content-Type": "application/json"})
        return r.status_code, 0
    events = 0
    async with client.stream("POST", endpoint, json={**NORMAL, "stream": True}) as r:
        if r.status_code != 200:
            await r.aread()
            return r.status_code, 0
        async for line in r.aiter_lines():
            events += line.startswith("data:")
            if kind == "abandoned" and events == 2:
                return 200, events  # leaving the block closes the connection mid-reply
    return r.status_code, events


async def _client(url: str, seed: int, until: float, budget: list[int], out: list) -> None:
    rng = random.Random(seed)
    names, weights = zip(*KINDS)
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=1)) as client:
        while time.monotonic() < until and budget[0] > 0:
            budget[0] -= 1
            kind = rng.choices(names, weights)[0]
            t0 = time.monotonic()
            try:
                status, n = await _one(client, url, kind, rng)
            except httpx.HTTPError as e:
                status, n = type(e).__name__, 0
            out.append((kind, status, time.monotonic() - t0, n))
            if status == 429:
                await asyncio.sleep(0.05)  # a polite client backs off when told the server is busy


async def _health_sampler(url: str, until: float, out: list) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        while time.monotonic() < until:
            t0 = time.monotonic()
            try:
                await client.get(f"{url}/health")
                out.append(time.monotonic() - t0)
            except httpx.HTTPError:
                out.append(float("inf"))
            await asyncio.sleep(0.1)


def _normal_latency(url: str, n: int = 5) -> float:
    times = []
    for _ in range(n):
        t0 = time.monotonic()
        r = httpx.post(f"{url}/v1/chat/completions", json={**NORMAL, "temperature": 0}, timeout=60)
        r.raise_for_status()
        times.append(time.monotonic() - t0)
    return statistics.median(times)


def build_parser() -> argparse.ArgumentParser:
    """The command line (tests/test_docs_commands.py parses the documented commands with it)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", help="checkpoint directory (default: the GENERATED toy model, trained here)")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--max-requests", type=int, default=5000)
    p.add_argument("--max-concurrent", type=int, default=4, help="the server's limit before 429")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    clients = max(1, min(args.clients, MAX_CLIENTS))
    seconds = max(1.0, min(args.seconds, MAX_SECONDS))
    budget = [max(1, min(args.max_requests, MAX_REQUESTS))]

    tmp = Path(tempfile.mkdtemp(prefix="c2c-serve-load-"))
    model = args.model
    if not model:
        from tests.support.toy import make_toy_checkpoint

        print("training the GENERATED toy model ...", flush=True)
        model = str(make_toy_checkpoint(tmp / "toy-model", steps=150))
    log = open(tmp / "server.log", "w+")
    proc, url = start_server(model, _free_port(), "--max-concurrent", str(args.max_concurrent),
                             "--request-timeout", "30", log=log)
    try:
        server = psutil.Process(proc.pid)
        baseline = _normal_latency(url)
        rss_before = server.memory_info().rss

        results: list = []
        health: list[float] = []
        t0 = time.monotonic()
        until = t0 + seconds

        async def run():
            await asyncio.gather(_health_sampler(url, until, health),
                                 *[_client(url, args.seed * 1000 + i, until, budget, results) for i in range(clients)])

        asyncio.run(run())
        wall = time.monotonic() - t0
        rss_after = server.memory_info().rss
        t_idle = time.monotonic()
        while httpx.get(f"{url}/health", timeout=10).json()["in_flight"] and time.monotonic() - t_idle < 30:
            time.sleep(0.05)
        idle_s = time.monotonic() - t_idle
        in_flight = httpx.get(f"{url}/health", timeout=10).json()["in_flight"]
        after = _normal_latency(url)

        by_kind: dict[str, list[float]] = defaultdict(list)
        statuses: Counter = Counter()
        for kind, status, lat, _ in results:
            statuses[f"{kind} {status}"] += 1
            if status == 200 or (kind == "hostile" and status in (400, 413)):  # answered as intended
                by_kind[kind].append(lat)
        tokens = sum(n for kind, status, _, n in results if kind == "normal" and status == 200)
        print(f"\nserve load test: {clients} clients, {wall:.1f} s, {len(results)} requests "
              f"({len(results) / wall:.1f}/s), model {model}")
        print(f"{'kind (answered)':<16}{'n':>6}{'p50 s':>9}{'p95 s':>9}{'p99 s':>9}")
        for kind, _ in KINDS:
            xs = by_kind.get(kind, [])
            print(f"{kind:<16}{len(xs):>6}{_pct(xs, 50):>9.3f}{_pct(xs, 95):>9.3f}{_pct(xs, 99):>9.3f}")
        print("responses by kind and status: " + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())))
        ok = sum(1 for _, s, _, _ in results if s == 200)
        print(f"throughput: {ok / wall:.1f} 200 responses/s, {tokens / wall:.1f} completion tokens/s (normal)")
        print(f"/health during load: n={len(health)} p50 {_pct(health, 50):.3f} s, p99 {_pct(health, 99):.3f} s, "
              f"max {max(health):.3f} s")
        print(f"server RSS: {rss_before / 2**20:.0f} MiB before, {rss_after / 2**20:.0f} MiB after "
              f"({(rss_after - rss_before) / 2**20:+.0f} MiB)")
        print(f"idle again {idle_s:.2f} s after the load stopped; in flight then: {in_flight}")
        print(f"normal request latency (median of 5): baseline {baseline:.3f} s, after {after:.3f} s "
              f"({after / baseline:.2f}×)")
        t_stop = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=30)
        print(f"SIGINT → exit {rc} in {time.monotonic() - t_stop:.2f} s")
        failures = []
        if after > 3 * baseline + 0.5:
            failures.append(f"normal latency after the load {after:.3f} s > 3× baseline {baseline:.3f} s + 0.5 s")
        if in_flight:
            failures.append(f"{in_flight} requests still in flight 30 s after the load")
        if any(s == 500 for _, s, _, _ in results):
            failures.append("some requests got 500")
        for f in failures:
            print(f"FAIL: {f}")
        return 1 if failures else 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


if __name__ == "__main__":
    sys.exit(main())
