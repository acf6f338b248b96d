"""What the web page tests share: a small real store and a run folder like the run commands write."""

from __future__ import annotations

import json
from pathlib import Path

from memory.store import MemoryStore

SCRIPT_TEXT = '<script>window.__pwned = 1; alert("pwned")</script><img src=x onerror="window.__pwned=2"> plain words after'
PAMPHLETS = (
    ("check SigninLogs for risky sign-ins from a new country", "student", ["signin", "benchmark:soc"]),
    ("look for inbox rules created after a phishing email", "student", ["phishing", "benchmark:soc"]),
    ("escalate ransomware staging to the teacher at once", "teacher", ["ransomware"]),
    (SCRIPT_TEXT, "student", ["injected"]),
)


def fill_store(path: Path, index_dir: Path) -> list[int]:
    """Four pamphlets (one holding HTML and script), a track record, an episode provenance."""
    with MemoryStore.open(path, embedder="hash:256", index_dir=index_dir) as memory:
        ids = [memory.add({"text": t, "audience": a, "tags": tags, "cue": "when it fits",
                           "provenance": {"source": "test", "episode_ids": [f"ep-{n}"], "model": "procedural"}}, changed_by="test").id
               for n, (t, a, tags) in enumerate(PAMPHLETS)]
        memory.record_use(ids[0], "ep-10", 1.0)
        memory.record_use(ids[0], "ep-11", 0.5)
        memory.record_use(ids[1], "ep-12", 0.0)
    return ids


def make_run(root: Path) -> Path:
    """A run folder: results.json, report.md (with a table, raw HTML, a plot link), a PNG, a trace."""
    from matplotlib.figure import Figure

    run = root / "runs" / "first"
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({"episodes": 30, "success_rate": 0.9333333, "lane_mix": {"auto": 10, "paired": 20},
                                                  "phases": [{"success": 0.8}, {"success": 1.0}]}))
    (run / "report.md").write_text(
        "# Run report\n\n| arm | success |\n|---|---|\n| atlas | 0.93 |\n\n<script>window.__pwned = 3</script>\n\n"
        "![success](success_cost.png)\n\n[episodes](episodes.jsonl)\n"
    )
    figure = Figure(figsize=(3, 2))
    figure.add_subplot().plot([0, 1, 2], [0.5, 0.8, 0.9])
    figure.savefig(run / "success_cost.png")
    (run / "episodes.jsonl").write_text('{"episode": 1, "success": true}\n')
    return run
