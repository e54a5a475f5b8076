#!/usr/bin/env python
"""Soak test for `llmclassify serve` under faults: N requests, valid ones mixed with bad ones.

Starts `python -m llmclassify.serve RUN` on a free loopback port, sends a warm-up, then
`--requests` (default 10,000) requests from `--concurrency` clients. About `--bad` (default 8%)
of them are faults a careless or hostile client sends: malformed JSON, wrong types, empty or
oversized texts, too many texts, a body over the limit, a body that is not UTF-8, deeply nested
JSON, a lone-surrogate escape, unknown routes and methods, clients that hang up mid-request
and raw bytes that are not HTTP.
Checks, every one bounded in time:

- every valid request gets 200 and one result per text;
- every bad request gets a 4xx with a JSON `error` (hang-ups get nothing, by design);
- the server still answers /health at the end;
- server RSS after the run minus RSS after the warm-up stays under `--max-growth-mb`.

Prints a summary (and the RSS series) and optionally writes JSON. Exit status 1 on any failed
check. Loopback only.

    python benchmarks/soak_test.py --run runs/sms
    python benchmarks/soak_test.py --run runs/sms --requests 2000 --json soak.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_test import MALFORMED, launch_server, load_texts, rss_mb, stop_server  # noqa: E402

MAX_CHARS = 2_000  # server limits for the run: small, so oversized requests are cheap to send
MAX_TEXTS = 16
MAX_BODY = 64 * 1024


def bad_requests() -> list[tuple[str, str, bytes, dict]]:
    """(name, method + path, body, headers): each must get a 4xx JSON error."""
    j = {"content-type": "application/json"}
    out = [(f"malformed:{i}", "POST /v1/classify", body, {"content-type": ct})
           for i, (body, ct) in enumerate(MALFORMED)]
    out += [
        ("empty text", "POST /v1/classify", b'{"texts": ["ok", ""]}', j),
        ("text too long", "POST /v1/classify", json.dumps({"texts": ["x" * (MAX_CHARS + 1)]}).encode(), j),
        ("too many texts", "POST /v1/classify", json.dumps({"texts": ["a"] * (MAX_TEXTS + 1)}).encode(), j),
        ("body too large", "POST /v1/classify", json.dumps({"texts": ["y" * (MAX_BODY + 10)]}).encode(), j),
        ("not utf-8", "POST /v1/classify", b'{"texts": ["caf\xe9"]}', j),
        ("lone surrogate", "POST /v1/classify", b'{"texts": ["\\ud800"]}', j),
        ("deep nesting", "POST /v1/classify", b'{"texts": ' + b"[" * 5000 + b"]" * 5000 + b"}", j),
        ("null texts", "POST /v1/classify", b'{"texts": null}', j),
        ("threshold nan", "POST /v1/classify", b'{"texts": ["a"], "threshold": NaN}', j),
        ("unknown route", "POST /v1/classifyy", b'{"texts": ["a"]}', j),
        ("wrong method", "GET /v1/classify", b"", {}),
    ]
    return out


async def soak(url: str, *, n: int, concurrency: int, bad_share: float, hangup_share: float,
               texts: list[str], seed: int, timeout: float, pid: int | None, deadline: float,
               sample_every: int = 500) -> dict:
    rng = random.Random(seed)
    bads = bad_requests()
    c = {"issued": 0, "valid": 0, "valid_ok": 0, "valid_errors": 0, "bad": 0, "bad_4xx": 0,
         "bad_unexpected": 0, "hangups": 0, "texts": 0}
    by_status: dict[str, int] = {}
    samples: list[str] = []
    rss_series: list[tuple[int, float | None]] = []

    def take() -> bool:
        if c["issued"] >= n or time.monotonic() >= deadline:
            return False
        c["issued"] += 1
        if c["issued"] % sample_every == 0:
            rss_series.append((c["issued"], rss_mb(pid)))
        return True

    async def one(client: httpx.AsyncClient) -> None:
        r_ = rng.random()
        if r_ < hangup_share:  # a client that gives up mid-request, or speaks no HTTP at all
            c["hangups"] += 1
            if rng.random() < 0.5:
                body = {"texts": [rng.choice(texts) for _ in range(MAX_TEXTS)]}
                try:
                    await asyncio.wait_for(client.post("/v1/classify", json=body), timeout=0.001)
                except (asyncio.TimeoutError, httpx.HTTPError):
                    pass
            else:
                host, port = url.rsplit("/", 1)[-1].split(":")
                try:
                    reader, writer = await asyncio.open_connection(host, int(port))
                    writer.write(b"\x16\x03\x01 GARBAGE \xff\xfe\r\nContent-Length: -1\r\n\r\n")
                    await writer.drain()
                    await asyncio.wait_for(reader.read(1024), timeout=5)
                    writer.close()
                except (OSError, asyncio.TimeoutError):
                    pass
            return
        if r_ < hangup_share + bad_share:
            name, route, body, headers = rng.choice(bads)
            method, path = route.split(" ", 1)
            c["bad"] += 1
            try:
                r = await client.request(method, path, content=body or None, headers=headers)
                ok = 400 <= r.status_code < 500 and "error" in r.json()
                by_status[str(r.status_code)] = by_status.get(str(r.status_code), 0) + 1
            except Exception as exc:  # noqa: BLE001 - count, never crash the soak
                ok, r = False, exc
            c["bad_4xx" if ok else "bad_unexpected"] += 1
            if not ok and len(samples) < 10:
                samples.append(f"{name} -> {getattr(r, 'status_code', r)!r} {getattr(r, 'text', '')[:120]}")
            return
        batch = [rng.choice(texts) for _ in range(rng.randint(1, 4))]
        c["valid"] += 1
        try:
            r = await client.post("/v1/classify", json={"texts": batch})
            good = r.status_code == 200 and len(r.json()["results"]) == len(batch)
        except Exception as exc:  # noqa: BLE001
            good, r = False, exc
        if good:
            c["valid_ok"] += 1
            c["texts"] += len(batch)
        else:
            c["valid_errors"] += 1
            if len(samples) < 10:
                samples.append(f"valid -> {getattr(r, 'status_code', r)!r} {getattr(r, 'text', '')[:120]}")

    async def worker() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=timeout) as client:
            while take():
                await one(client)

    t0 = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    return {**c, "seconds": round(time.perf_counter() - t0, 2), "bad_by_status": by_status,
            "samples": samples, "rss_series_mb": rss_series}


def health(url: str) -> dict:
    try:
        return httpx.get(url + "/health", timeout=10).json()
    except Exception:  # noqa: BLE001
        return {}


def start_server(run: str, startup_timeout: float) -> tuple[subprocess.Popen, str]:
    return launch_server(run, ["--log-level", "error", "--max-chars", str(MAX_CHARS), "--max-texts", str(MAX_TEXTS),
                               "--max-body-bytes", str(MAX_BODY)], startup_timeout, quiet=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="run directory to serve")
    p.add_argument("--requests", type=int, default=10_000)
    p.add_argument("--warmup", type=int, default=500, help="requests before the RSS baseline")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--bad", type=float, default=0.08, help="share of bad requests")
    p.add_argument("--hangups", type=float, default=0.01, help="share of clients hanging up mid-request")
    p.add_argument("--max-growth-mb", type=float, default=50.0)
    p.add_argument("--max-seconds", type=float, default=900.0, help="stop issuing requests after this")
    p.add_argument("--timeout", type=float, default=60.0, help="per request, seconds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the report here too")
    a = p.parse_args(argv)

    proc, url = start_server(a.run, 300)
    texts = load_texts()
    common = dict(concurrency=a.concurrency, bad_share=a.bad, hangup_share=a.hangups, texts=texts,
                  timeout=a.timeout, pid=proc.pid)
    try:
        rss_start = rss_mb(proc.pid)
        end = time.monotonic() + a.max_seconds
        warm = asyncio.run(soak(url, n=a.warmup, seed=a.seed + 1, deadline=end, **common))
        time.sleep(0.5)
        rss_warm = rss_mb(proc.pid)
        main_ = asyncio.run(soak(url, n=a.requests, seed=a.seed, deadline=end, **common))
        time.sleep(0.5)
        rss_end = rss_mb(proc.pid)
        h = health(url)
        alive = proc.poll() is None and h.get("status") == "ok"
    finally:
        stop_server(proc)
    growth = None if rss_end is None or rss_warm is None else round(rss_end - rss_warm, 1)
    checks = {
        "all requests issued": main_["issued"] == a.requests,
        "every valid request succeeded": main_["valid_errors"] == 0 and warm["valid_errors"] == 0,
        "every bad request got a 4xx JSON error": main_["bad_unexpected"] == 0 and warm["bad_unexpected"] == 0,
        "server alive and healthy at the end": alive,
        f"RSS growth after warm-up < {a.max_growth_mb:g} MB": growth is not None and growth < a.max_growth_mb,
    }
    report = {"config": vars(a), "warmup": warm, "run": main_, "health_after": h,
              "rss_mb": {"start": rss_start, "after_warmup": rss_warm, "end": rss_end, "growth": growth},
              "checks": checks}
    r = main_
    print(f"{r['issued']} requests in {r['seconds']} s ({a.concurrency} clients): "
          f"{r['valid_ok']}/{r['valid']} valid OK ({r['texts']} texts), "
          f"{r['bad_4xx']}/{r['bad']} bad answered 4xx {r['bad_by_status']}, {r['hangups']} hang-ups")
    print(f"server RSS: {rss_start} MB at start, {rss_warm} MB after {a.warmup} warm-up requests, "
          f"{rss_end} MB at the end (growth {growth} MB); series {r['rss_series_mb']}")
    print(f"server counters after: {h}")
    for name, ok in checks.items():
        print(f"  [{'ok' if ok else 'FAIL'}] {name}")
    for s in warm["samples"] + r["samples"]:
        print(f"  sample: {s}", file=sys.stderr)
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
