"""Plots are drawn on the object API: a notebook user's matplotlib backend is never switched."""

import matplotlib

from benchmarks.continual.report import plot_heatmaps
from benchmarks.reports import plot_arms, plot_classes, plot_lane_mix


def test_plots_leave_the_callers_backend_alone(tmp_path):
    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        rows = [{"success": i % 2, "cost": 0.01 * i, "lane": "auto" if i % 3 else "paired"} for i in range(40)]
        written = [
            plot_arms({"atlas": rows}, tmp_path / "arms.png"),
            plot_lane_mix(rows, tmp_path / "lanes.png"),
            plot_classes([0, 1, 2, 1] * 10, [0, 1, 1, 2] * 10, ["a", "b", "c"], tmp_path / "classes.png"),
            *plot_heatmaps({"learners": {"naive": {"acc_matrix": [[1.0, 0.0], [0.5, 0.9]]}}, "tasks": [0, 1],
                            "scenario": "toy", "protocol": "task-il"}, tmp_path),
        ]
        assert matplotlib.get_backend() == "svg"
        assert all(path.stat().st_size > 1000 and path.read_bytes()[:4] == b"\x89PNG" for path in written)
    finally:
        matplotlib.use(before)
