"""The cost-quality plot: every policy, the frontier, and the baselines marked.

matplotlib is imported when a plot is drawn (Agg backend, no display needed), never before.
The x axis is total USD; when costs are unknown but a strong model is named, it is the
share of calls to the strong model (RouteLLM's axis).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from routedllm.core.errors import InvalidRequestError
from routedllm.evaluation.suite import Report

_COLORS = {
    "always": "#7f7f7f",
    "preset": "#1f77b4",
    "sweep": "#1f77b4",
    "random": "#9467bd",
    "oracle": "#2ca02c",
    "calibrated": "#d62728",
    "calibrated sweep": "#d62728",
    "learned": "#ff7f0e",
}


def plot(report: Report, path: str | Path, title: str = "") -> Path:
    """Draw ``report`` to a PNG at ``path``; returns the path."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InvalidRequestError("plots need matplotlib: pip install 'routedllm[eval]'") from None
    ev = report.evaluation
    strong = report.two_model["strong"] if report.two_model else None
    by_cost = all(r.cost_usd is not None and not r.uncosted for r in ev.results)
    if not by_cost and strong is None:
        raise InvalidRequestError(
            "nothing to plot: costs are unknown (give --cost MODEL=USD "
            "or --strong/--weak for a strong-share axis)"
        )

    def x_of(r: Any) -> float:
        return r.cost_usd if by_cost else r.share(strong)

    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    try:
        sweeps: dict[str, list[tuple[float, float]]] = {}
        for r in ev.results:
            if r.quality is None:
                continue
            if r.kind.endswith("sweep"):
                sweeps.setdefault(r.kind, []).append((x_of(r), r.quality))
                continue
            marker = "s" if r.kind == "always" else "o"
            color = _COLORS.get(r.kind, "k")
            # hollow: the result leaves rows unrouted, unscored or unpriced
            ax.scatter(
                [x_of(r)],
                [r.quality],
                marker=marker,
                zorder=3,
                edgecolors=color,
                facecolors=color if r.complete else "none",
            )
            label = r.name.removeprefix("always:") + ("" if r.complete else " (partial)")
            ax.annotate(
                label, (x_of(r), r.quality), fontsize=7, xytext=(4, 3), textcoords="offset points"
            )
        for kind, pts in sweeps.items():
            pts.sort()
            ax.plot(
                *zip(*pts, strict=True),
                color=_COLORS.get(kind, "k"),
                marker=".",
                linewidth=1,
                label=f"{kind} ({len(pts)} points)",
            )
        if by_cost and ev.frontier["points"]:
            fx = [p["cost_usd"] for p in ev.frontier["points"]]
            fy = [p["quality"] for p in ev.frontier["points"]]
            ax.plot(fx, fy, "k--", linewidth=1, label="frontier (non-decreasing hull)")
        _mark(ax, ev, ev.best_single, x_of, "*", "best single model")
        _mark(ax, ev, ev.cheapest_meeting_floor, x_of, "D", "cheapest model meeting the floor")
        if ev.floor is not None:
            ax.axhline(
                ev.floor,
                color="#bbbbbb",
                linestyle=":",
                linewidth=1,
                label=f"quality floor {ev.floor:.3f}",
            )
        if report.two_model and not by_cost:
            ax.plot(
                [0, 1],
                [
                    report.two_model["weak_only"]["quality"],
                    report.two_model["strong_only"]["quality"],
                ],
                color=_COLORS["random"],
                linestyle=":",
                label="random (mix of the two)",
            )
        ax.set_xlabel("total cost (USD)" if by_cost else f"share of calls to {strong}")
        ax.set_ylabel(f"quality ({ev.mode}, 0-1)")
        ax.set_title(
            (title or f"cost against quality, {ev.rows} rows")
            + "\n(hollow: partial, some rows unrouted, unscored or unpriced)"
            * any(not r.complete for r in ev.results),
            fontsize=10,
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def _mark(ax: Any, ev: Any, name: str | None, x_of: Any, marker: str, label: str) -> None:
    if name is None:
        return
    r = ev.get(name)
    if r.quality is not None:
        ax.scatter(
            [x_of(r)],
            [r.quality],
            s=160,
            facecolors="none",
            edgecolors="k",
            marker=marker,
            zorder=4,
            label=f"{label}: {name.removeprefix('always:')}",
        )
