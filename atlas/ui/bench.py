"""`atlas ui bench`: server-side time of the web page at N pamphlets.

The store holds N pamphlets with clustered synthetic vectors (as `atlas memory bench`) and a
track record on some of them; the real MiniLM embedder embeds every search query (each query text
is new, so its cache never answers). Requests go through the whole app in process (routing,
guard, store reads, template rendering); the figures are the app's own ``Server-Timing``: wall
milliseconds, and process CPU milliseconds (what a loaded machine inflates least)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from starlette.testclient import TestClient

from atlas.ui.app import create_app
from memory.bench import QUERY_TEXTS, TAGS, clustered_vectors
from memory.embed import make_embedder
from memory.store import MemoryStore

LIST_TARGET_MS = 1000.0
SEARCH_TARGET_MS = 100.0
WORDS = ("account", "sign-in", "alert", "device", "mailbox", "rule", "hash", "process", "address", "consent", "token", "share")


def _items(n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    items = []
    for i in range(n):
        words = " ".join(rng.choice(WORDS, size=12))
        tags = [TAGS[i % len(TAGS)], f"benchmark:{'soc' if i % 3 else 'excytin'}"]
        items.append({"text": f"pamphlet {i}: follow the {words}", "audience": "student" if rng.random() < 0.8 else "teacher",
                      "tags": tags, "cue": f"cue {i % 17}", "plan": {"kind": "route", "hops": ["account", "device"][: 1 + i % 2]}})
    return items


def _server_ms(response: Any) -> tuple[float, float]:
    """(wall, CPU) milliseconds the app reported for one request."""
    if response.status_code != 200:
        raise RuntimeError(f"{response.request.url} answered {response.status_code}: {response.text[:300]}")
    timing = dict(part.strip().split(";dur=") for part in response.headers["server-timing"].split(","))
    return float(timing["app"]), float(timing["cpu"])


def _figure(samples: list[tuple[float, float]], target: float | None) -> dict[str, Any]:
    wall, cpu = np.asarray([s[0] for s in samples]), np.asarray([s[1] for s in samples])
    out = {
        "p50_ms": float(np.percentile(wall, 50)), "p99_ms": float(np.percentile(wall, 99)), "max_ms": float(wall.max()),
        "cpu_p50_ms": float(np.percentile(cpu, 50)), "n": len(samples),
    }
    if target is not None:
        out["target_ms"] = target
    return out


def run_bench(n: int, out: Path, queries: int = 50, repeats: int = 5, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    embedder = make_embedder("minilm")
    folder = out / "ui-bench-store"
    shutil.rmtree(folder, ignore_errors=True)
    memory = MemoryStore.open(folder / "memory.sqlite", embedder=embedder, index_dir=folder / "indexes")
    try:
        built = time.perf_counter()
        ids = memory.add_many(_items(n, rng), vectors=clustered_vectors(n, embedder.dim, rng), changed_by="bench")
        for pamphlet_id in rng.choice(ids, size=min(300, n), replace=False):
            memory.record_use(int(pamphlet_id), f"episode-{pamphlet_id}", float(rng.random()))
        build_s = time.perf_counter() - built
        app = create_app(memory, runs_root=folder, host="127.0.0.1", port=8765, page_size=100)
        requests: dict[str, Any] = {}
        with TestClient(app, base_url="http://127.0.0.1:8765") as client:
            pages = {
                f"list all {n:,} (per_page=all)": ("/pamphlets?per_page=all", LIST_TARGET_MS),
                f"list all {n:,}, sorted by mean reward": ("/pamphlets?per_page=all&sort=-reward", LIST_TARGET_MS),
                "list, first page of 100": ("/pamphlets", None),
                "list, tag filter, first page": (f"/pamphlets?tags={TAGS[0]}", None),
                "one pamphlet with history": (f"/pamphlets/{ids[len(ids) // 2]}", None),
            }
            for name, (url, target) in pages.items():
                _server_ms(client.get(url))  # warm the page once
                requests[name] = _figure([_server_ms(client.get(url)) for _ in range(repeats)], target)
            cold = []
            with MemoryStore.open(folder / "memory.sqlite", index_dir=folder / "other-indexes") as other:  # another process's edits
                for n_edit in range(repeats):
                    other.update(ids[n_edit], text=f"edited elsewhere {n_edit}", changed_by="bench")
                    cold.append(_server_ms(client.get("/pamphlets?per_page=all")))
            requests[f"list all {n:,} right after another process wrote (re-read)"] = _figure(cold, LIST_TARGET_MS)
            _server_ms(client.get("/pamphlets", params={"q": "warm up the embedder"}))
            texts = [f"{QUERY_TEXTS[i % len(QUERY_TEXTS)]} {i}" for i in range(queries)]  # new texts: no embedder cache hit
            requests["semantic search, k=50"] = _figure([_server_ms(client.get("/pamphlets", params={"q": t})) for t in texts], SEARCH_TARGET_MS)
            filtered = [f"{t} filtered" for t in texts]
            requests["semantic search, k=50, audience + tag"] = _figure(
                [_server_ms(client.get("/pamphlets", params={"q": t, "audience": "student", "tags": TAGS[1]})) for t in filtered], SEARCH_TARGET_MS
            )
    finally:
        memory.close()
    met = all(f["p50_ms"] < f["target_ms"] for f in requests.values() if "target_ms" in f)
    return {"n": n, "seed": seed, "embedder": embedder.name, "build_s": build_s, "requests": requests, "targets_met": met}
