#!/usr/bin/env python
"""Load test for `llmclassify serve`: throughput, latency and memory under concurrent clients.

Starts the server on a free loopback port for a run directory (or targets one with --url), then:
warm-up, a one-at-a-time phase (concurrency 1) and a concurrent phase (default 16 clients for
30 s). A share of requests (default 5%) is deliberately malformed; those must get a 4xx, valid
ones must all succeed. Reports requests/s, texts/s, p50/p90/p99 latency of valid requests,
errors, server-side batch sizes and server RSS; prints a Markdown table, optionally writes JSON.
Every phase is bounded by time and by request count. Loopback only.

    python benchmarks/load_test.py --run runs/sms
    python benchmarks/load_test.py --run runs/sms --concurrency 16 --duration 30 --json out.json
    python benchmarks/load_test.py --url http://127.0.0.1:8000 --server-pid 1234

Exit status 1 when any valid request failed or a malformed one was not answered with a 4xx.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx

FALLBACK_TEXTS = [
    "WINNER!! You have been selected to receive a £900 prize reward! To claim call 09061701461.",
    "URGENT! Your mobile number has won a FREE 2-week holiday. Text CLAIM to 87121 now.",
    "Free entry in 2 a wkly comp to win FA Cup final tkts 21st May. Text FA to 87121.",
    "Congratulations ur awarded 500 of CD vouchers or 125gift guaranteed & Free entry 2 100 wkly draw",
    "Hey, are we still meeting for lunch at 1? I can pick you up on the way.",
    "Ok lar... Joking wif u oni...",
    "Sorry, I'll be late tonight. Can you feed the cat and save me some dinner?",
    "I'm gonna be home soon and i don't want to talk about this stuff anymore tonight, k?",
    "Did you get the notes from yesterday's lecture? I missed the second half.",
    "k",
]

# Malformed bodies a careless client sends: all must get 4xx, none may hurt the server.
MALFORMED = [
    (b'{"texts": ["unterminated', "application/json"),
    (b"not json", "application/json"),
    (b'{"texts": "a string, not a list"}', "application/json"),
    (b'{"texts": [1, 2, 3]}', "application/json"),
    (b'{"texts": []}', "application/json"),
    (b'{"txt": ["typo"]}', "application/json"),
    (b'{"texts": ["ok"], "threshold": 7}', "application/json"),
    (b"texts=hello", "application/x-www-form-urlencoded"),
    (b"", "application/json"),
]


def load_texts() -> list[str]:
    try:
        from llmclassify.data import load_dataset

        texts = list(dict.fromkeys(load_dataset("sms-spam").texts))
        if len(texts) >= 100:
            random.Random(0).shuffle(texts)
            return texts[:2000]
    except Exception as exc:  # the built-in data set is a convenience, not a requirement
        print(f"(using built-in texts: {exc})", file=sys.stderr)
    return FALLBACK_TEXTS


def rss_mb(pid: int | None) -> float | None:
    if not pid:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_server(run: str, extra: list[str], startup_timeout: float, port: int | None = None,
                  quiet: bool = False) -> tuple[subprocess.Popen, str]:
    """Start `python -m llmclassify.serve RUN` on a loopback port; return it once /health answers."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "llmclassify.serve", run, "--host", "127.0.0.1", "--port", str(port), *extra]
    print("starting:", " ".join(cmd), file=sys.stderr)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL if quiet else None)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with status {proc.returncode} during startup")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop_server(proc)
    raise SystemExit(f"server did not answer /health within {startup_timeout} s")


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 20 s."""
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_server(args) -> tuple[subprocess.Popen, str]:
    return launch_server(args.run, ["--log-level", "warning", "--batch-max", str(args.batch_max),
                                    "--batch-wait-ms", str(args.batch_wait_ms)],
                         args.startup_timeout, port=args.port)


async def run_phase(url, *, name, concurrency, duration, max_requests, malformed, texts,
                    texts_per_request, seed, pid, timeout) -> dict:
    rng = random.Random(seed)
    latencies: list[float] = []
    counts = {"valid": 0, "valid_ok": 0, "valid_errors": 0, "malformed": 0,
              "malformed_4xx": 0, "malformed_unexpected": 0, "texts": 0, "busy_503": 0}
    error_samples: list[str] = []
    issued = 0
    stop_at = time.monotonic() + duration
    peak_rss = rss_mb(pid) or 0.0

    def take() -> bool:
        nonlocal issued
        if issued >= max_requests or time.monotonic() >= stop_at:
            return False
        issued += 1
        return True

    async def client_loop(client: httpx.AsyncClient):
        while take():
            if rng.random() < malformed:
                body, ctype = rng.choice(MALFORMED)
                counts["malformed"] += 1
                try:
                    r = await client.post("/v1/classify", content=body,
                                          headers={"content-type": ctype})
                    ok = 400 <= r.status_code < 500 and "error" in r.json()
                except Exception as exc:  # noqa: BLE001 - a load test counts, it does not crash
                    ok, r = False, exc
                counts["malformed_4xx" if ok else "malformed_unexpected"] += 1
                if not ok and len(error_samples) < 5:
                    error_samples.append(f"malformed -> {getattr(r, 'status_code', r)!r}")
                continue
            batch = [rng.choice(texts) for _ in range(texts_per_request)]
            counts["valid"] += 1
            t0 = time.perf_counter()
            try:
                r = await client.post("/v1/classify", json={"texts": batch})
                dt = time.perf_counter() - t0
                good = r.status_code == 200 and len(r.json()["results"]) == len(batch)
            except Exception as exc:  # noqa: BLE001
                dt, good, r = time.perf_counter() - t0, False, exc
            if good:
                counts["valid_ok"] += 1
                counts["texts"] += len(batch)
                latencies.append(dt)
            else:
                counts["valid_errors"] += 1
                if getattr(r, "status_code", None) == 503:
                    counts["busy_503"] += 1
                if len(error_samples) < 5:
                    detail = getattr(r, "text", repr(r))[:200]
                    error_samples.append(f"valid -> {getattr(r, 'status_code', '')} {detail}")

    async def sample_rss():
        nonlocal peak_rss
        while True:
            peak_rss = max(peak_rss, rss_mb(pid) or 0.0)
            await asyncio.sleep(0.5)

    health0 = await get_health(url)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:
        sampler = asyncio.create_task(sample_rss())
        t_start = time.perf_counter()
        await asyncio.gather(*[client_loop(client) for _ in range(concurrency)])
        elapsed = time.perf_counter() - t_start
        sampler.cancel()
    health1 = await get_health(url)
    lat = sorted(latencies)
    ms = lambda v: None if v is None else round(1000 * v, 1)  # noqa: E731
    batches = (health1.get("batches", 0) - health0.get("batches", 0)) if health0 and health1 else None
    served = (health1.get("texts", 0) - health0.get("texts", 0)) if health0 and health1 else None
    return {
        "phase": name, "concurrency": concurrency, "seconds": round(elapsed, 2),
        "requests": issued, **counts,
        "requests_per_s": round(counts["valid_ok"] / elapsed, 2) if elapsed else None,
        "texts_per_s": round(counts["texts"] / elapsed, 2) if elapsed else None,
        "p50_ms": ms(percentile(lat, 50)), "p90_ms": ms(percentile(lat, 90)),
        "p99_ms": ms(percentile(lat, 99)), "max_ms": ms(lat[-1] if lat else None),
        "mean_batch_texts": round(served / batches, 2) if batches else None,
        "peak_rss_mb": peak_rss or None, "error_samples": error_samples,
    }


async def get_health(url) -> dict:
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            return (await c.get("/health")).json()
    except Exception:  # noqa: BLE001
        return {}


def markdown(report: dict) -> str:
    cols = [("phase", "phase"), ("clients", "concurrency"), ("s", "seconds"),
            ("valid req", "valid"), ("malformed (4xx)", None), ("req/s", "requests_per_s"),
            ("texts/s", "texts_per_s"), ("p50 ms", "p50_ms"), ("p90 ms", "p90_ms"),
            ("p99 ms", "p99_ms"), ("max ms", "max_ms"), ("mean batch", "mean_batch_texts"),
            ("valid errors", "valid_errors")]
    lines = ["| " + " | ".join(c for c, _ in cols) + " |", "|" + "---|" * len(cols)]
    for ph in report["phases"]:
        cells = []
        for _, key in cols:
            if key is None:
                cells.append(f"{ph['malformed_4xx']}/{ph['malformed']}")
            else:
                v = ph.get(key)
                cells.append("-" if v is None else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    r = report["rss_mb"]
    lines.append("")
    lines.append(f"Server RSS: {r['start']} MB at start, {r['after_warmup']} MB after warm-up, "
                 f"{r['end']} MB after the load (peak {r['peak']} MB).")
    base, conc = report["phases"][0], report["phases"][-1]
    if len(report["phases"]) > 1 and base.get("texts_per_s") and conc.get("texts_per_s"):
        lines.append(f"Throughput with {conc['concurrency']} clients: "
                     f"{conc['texts_per_s'] / base['texts_per_s']:.1f}x one-at-a-time.")
    lines.append(f"Texts per request: {report['config']['texts_per_request']}; malformed share: "
                 f"{report['config']['malformed']:.0%}; server: {report['config']['server']}.")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--run", help="run directory: start `python -m llmclassify.serve RUN` on loopback")
    g.add_argument("--url", help="target an already running server (loopback only)")
    p.add_argument("--server-pid", type=int, help="with --url: server pid, for RSS figures")
    p.add_argument("--port", type=int, default=0, help="with --run: port (default: a free one)")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--duration", type=float, default=30.0, help="seconds of the concurrent phase")
    p.add_argument("--baseline-duration", type=float, default=10.0,
                   help="seconds of the one-at-a-time phase (0 to skip)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up (not reported)")
    p.add_argument("--max-requests", type=int, default=50_000, help="cap per phase")
    p.add_argument("--malformed", type=float, default=0.05, help="share of malformed requests")
    p.add_argument("--texts-per-request", type=int, default=1)
    p.add_argument("--timeout", type=float, default=60.0, help="per-request timeout, seconds")
    p.add_argument("--batch-max", type=int, default=32, help="with --run: server micro-batch size")
    p.add_argument("--batch-wait-ms", type=float, default=5.0, help="with --run: server batch wait")
    p.add_argument("--startup-timeout", type=float, default=300.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the report as JSON here")
    args = p.parse_args(argv)

    if args.url and urlparse(args.url).hostname not in {"127.0.0.1", "localhost", "::1"}:
        p.error("--url must be a loopback address")
    if not (0 <= args.malformed < 1) or args.concurrency < 1 or args.duration <= 0:
        p.error("need 0 <= --malformed < 1, --concurrency >= 1, --duration > 0")

    proc = None
    if args.run:
        proc, url = start_server(args)
        pid = proc.pid
    else:
        url, pid = args.url.rstrip("/"), args.server_pid
    texts = load_texts()
    common = dict(malformed=args.malformed, texts=texts, texts_per_request=args.texts_per_request,
                  pid=pid, timeout=args.timeout, max_requests=args.max_requests)
    try:
        rss_start = rss_mb(pid)
        if args.warmup > 0:
            asyncio.run(run_phase(url, name="warm-up", concurrency=min(4, args.concurrency),
                                  duration=args.warmup, seed=args.seed + 99, **common))
        rss_warm = rss_mb(pid)
        phases = []
        if args.baseline_duration > 0:
            print(f"one-at-a-time for {args.baseline_duration:g} s ...", file=sys.stderr)
            phases.append(asyncio.run(run_phase(url, name="one-at-a-time", concurrency=1,
                                                duration=args.baseline_duration, seed=args.seed,
                                                **common)))
        print(f"{args.concurrency} clients for {args.duration:g} s ...", file=sys.stderr)
        phases.append(asyncio.run(run_phase(url, name="concurrent", concurrency=args.concurrency,
                                            duration=args.duration, seed=args.seed + 1, **common)))
        health = asyncio.run(get_health(url))
        rss_end = rss_mb(pid)
    finally:
        if proc is not None:
            stop_server(proc)

    report = {
        "config": {"concurrency": args.concurrency, "duration": args.duration,
                   "baseline_duration": args.baseline_duration, "malformed": args.malformed,
                   "texts_per_request": args.texts_per_request, "batch_max": args.batch_max,
                   "batch_wait_ms": args.batch_wait_ms, "server": args.run or args.url,
                   "cpu_count": os.cpu_count()},
        "phases": phases,
        "rss_mb": {"start": rss_start, "after_warmup": rss_warm, "end": rss_end,
                   "peak": max([x for x in [rss_end] + [ph["peak_rss_mb"] for ph in phases] if x] or [None])
                   if pid else None},
        "server_health_after": health,
    }
    print(markdown(report))
    for ph in phases:
        for s in ph["error_samples"]:
            print(f"  {ph['phase']}: {s}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    bad = sum(ph["valid_errors"] + ph["malformed_unexpected"] for ph in phases)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
