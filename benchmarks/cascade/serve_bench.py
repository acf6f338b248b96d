"""`atlas cascade serve-bench`: what the cascade endpoint adds to a request, against the upstream-only path, in one run.

The upstream is the fake OpenAI server with a fixed latency; its "model" is a word-list rule on
the review (it never sees a ground-truth label). The endpoint runs as `atlas cascade serve` in
its own process, as a user would run it. First ``train`` requests teach it; then each of the
``requests`` timed texts is sent straight to the upstream (the upstream-only path, with the
prompt the endpoint would send) and through the endpoint, in alternating order, so both paths
see the same load. Every call goes through the real `openai` client, one at a time."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import openai

from benchmarks.fake_openai import FakeOpenAIServer, content_text
from benchmarks.streams.items import load_stream

TARGET_MS = 5.0
LABELS = ("negative", "positive")
PROMPT = "Review: {text}\n\nIs this review negative or positive? Answer with one word: {labels}."
POSITIVE = {"great", "excellent", "best", "love", "loved", "wonderful", "amazing", "perfect", "beautiful", "brilliant", "favorite",
            "enjoyed", "superb", "fantastic", "highly", "masterpiece"}
NEGATIVE = {"bad", "worst", "awful", "boring", "waste", "terrible", "poor", "stupid", "horrible", "dull", "worse", "disappointing",
            "mess", "ridiculous", "lame", "poorly"}


def word_rule(messages: list[dict[str, Any]]) -> str:
    """The fake upstream model's answer: more positive than negative lexicon words, or not."""
    words = re.findall(r"[a-z]+", content_text(messages[-1].get("content")).lower())
    positive, negative = sum(w in POSITIVE for w in words), sum(w in NEGATIVE for w in words)
    return f"The answer is {'positive' if positive >= negative else 'negative'}."


def _figure(samples: list[float], server: list[float] | None = None) -> dict[str, Any]:
    if not samples:
        return {"n": 0, "p50_ms": float("nan"), "p90_ms": float("nan"), "p99_ms": float("nan"), "server_p50_ms": None}
    values = np.asarray(samples)
    return {
        "n": len(samples), "p50_ms": float(np.percentile(values, 50)), "p90_ms": float(np.percentile(values, 90)),
        "p99_ms": float(np.percentile(values, 99)), "server_p50_ms": float(np.percentile(server, 50)) if server else None,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_endpoint(upstream: FakeOpenAIServer, out: Path, port: int, seed: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "atlas", "cascade", "serve", "--upstream", upstream.url, "--upstream-key", upstream.api_key,
               "--model", "scripted", "--labels", ",".join(LABELS), "--prompt", PROMPT, "--state", str(out / "cascade.state"),
               "--port", str(port), "--seed", str(seed)]
    log = (out / "endpoint.log").open("w")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def _wait_ready(client: openai.OpenAI, process: subprocess.Popen, out: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            client.models.list()
            return
        except openai.APIConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the endpoint did not start: {(out / 'endpoint.log').read_text()[-2000:]}") from None
            time.sleep(0.1)


def _server_ms(headers: Any) -> float:
    """The whole app's milliseconds from ``Server-Timing`` (``app;dur=...``; the handler's is ``cascade``)."""
    parts = dict(part.strip().split(";dur=") for part in headers["server-timing"].split(","))
    return float(parts["app"])


def _cpu_ms(pid: int) -> float:
    """User + system CPU milliseconds the process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1e3 / os.sysconf("SC_CLK_TCK")


def _timed(call: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = call()
    return (time.perf_counter() - started) * 1e3, result


def run_serve_bench(out: Path, train: int = 600, requests: int = 400, upstream_latency_s: float = 0.02, seed: int = 0) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    texts = [item.text for item in load_stream("imdb", train + requests, seed).items]  # the labels are never read
    load_before = os.getloadavg()
    with FakeOpenAIServer(replier=word_rule, latency_s=upstream_latency_s) as upstream:
        port = _free_port()
        process = _start_endpoint(upstream, out, port, seed)
        endpoint = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        direct = openai.OpenAI(base_url=upstream.url, api_key=upstream.api_key, max_retries=0)
        try:
            _wait_ready(endpoint, process, out)

            def through_endpoint(text: str) -> tuple[float, str, float]:
                ms, raw = _timed(lambda: endpoint.chat.completions.with_raw_response.create(model="cascade", messages=[{"role": "user", "content": text}]))
                raw.parse()
                return ms, raw.headers["x-cascade-level"], _server_ms(raw.headers)

            def straight_upstream(text: str) -> float:
                prompt = PROMPT.format(text=text, labels=", ".join(LABELS))
                ms, _ = _timed(lambda: direct.chat.completions.create(model="scripted", messages=[{"role": "user", "content": prompt}],
                                                                      max_tokens=16, temperature=0.0))
                return ms

            for text in texts[:3]:  # connections and code paths warm on both sides
                straight_upstream(text)
            trained_levels, training_ms = [], []
            for text in texts[:train]:
                ms, level, _ = through_endpoint(text)
                trained_levels.append(level)
                training_ms.append(ms)
            samples: dict[str, list[float]] = {"direct": [], "forward": [], "cheap": [], "floor": []}
            server: dict[str, list[float]] = {"forward": [], "cheap": []}
            timed_levels = []
            for n, text in enumerate(texts[train:]):
                if n % 2:
                    samples["direct"].append(straight_upstream(text))
                ms, level, server_ms = through_endpoint(text)
                timed_levels.append(level)
                path = "forward" if level == "upstream" else "cheap"
                samples[path].append(ms)
                server[path].append(server_ms)
                if not n % 2:
                    samples["direct"].append(straight_upstream(text))
                samples["floor"].append(_timed(lambda: endpoint.models.list())[0])
            pool = [t for t, level in zip(texts[train:], timed_levels) if level != "upstream"]
            for _ in range(5):  # until one pass over the pool is all cheap: then nothing is learned and it stays so
                levels = [through_endpoint(text)[1] for text in pool]
                if "upstream" not in levels:
                    break
                pool = [t for t, level in zip(pool, levels) if level != "upstream"]
            repeat = (pool * (1 + requests // max(1, len(pool))))[:requests] if pool else []
            cpu_before = _cpu_ms(process.pid)
            block = [through_endpoint(text) for text in repeat]
            cpu_per_request = (_cpu_ms(process.pid) - cpu_before) / len(block) if block else float("nan")
            samples["cheap block"] = [ms for ms, _, _ in block]
            server["cheap block"] = [server_ms for _, _, server_ms in block]
            block_upstream = sum(level == "upstream" for _, level, _ in block)
            stats = endpoint.get("/cascade/stats", cast_to=object)
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
    paths = {
        "upstream only (straight to the fake upstream)": _figure(samples["direct"]),
        "endpoint, forwarded upstream": _figure(samples["forward"], server["forward"]),
        "endpoint, a cheap level answered": _figure(samples["cheap"], server["cheap"]),
        "endpoint, GET /v1/models (HTTP floor)": _figure(samples["floor"]),
        "endpoint, cheap answers only (CPU block)": _figure(samples["cheap block"], server["cheap block"]),
    }
    cheap_path = paths["endpoint, a cheap level answered"]
    cheap, forward, floor, direct_p50 = cheap_path["p50_ms"], paths["endpoint, forwarded upstream"]["p50_ms"], \
        paths["endpoint, GET /v1/models (HTTP floor)"]["p50_ms"], paths["upstream only (straight to the fake upstream)"]["p50_ms"]
    server_p50 = cheap_path["server_p50_ms"] if cheap_path["server_p50_ms"] is not None else float("nan")
    summary = [
        f"training: {train} requests, {trained_levels.count('upstream')} went upstream; timed: {len(samples['cheap'])} of {requests} answered by a cheap level",
        f"a cheap answer: the endpoint spends {server_p50:.2f} ms (p50, whole app, wall) and {cpu_per_request:.2f} ms of its CPU "
        f"(HTTP included); {cheap:.2f} ms end to end for the client (HTTP floor {floor:.2f} ms), against {direct_p50:.2f} ms for the upstream-only path",
        f"CPU block: {len(samples['cheap block'])} requests answered by a cheap level ({block_upstream} went upstream), "
        f"{cpu_per_request:.2f} ms of the endpoint process's CPU each",
        f"forwarding adds {forward - direct_p50:.2f} ms (p50 endpoint-to-upstream {forward:.2f} ms vs straight {direct_p50:.2f} ms)",
        f"load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after (2 cores shared: absolute times are inflated; compare within the run)",
    ]
    return {
        "train": train, "requests": requests, "seed": seed, "upstream_latency_ms": upstream_latency_s * 1e3, "paths": paths,
        "cheap_share": len(samples["cheap"]) / requests, "endpoint_stats": stats, "summary": summary,
        "endpoint_cpu_ms_per_cheap_request": cpu_per_request, "endpoint_ms_per_cheap_request_p50": server_p50,
        "target_ms": TARGET_MS, "target_met": bool(samples["cheap"]) and server_p50 < TARGET_MS and cpu_per_request < TARGET_MS,
        "state_saved": (out / "cascade.state").is_file(), "load_average": [load_before[0], os.getloadavg()[0]],
    }
