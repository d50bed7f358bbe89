"""Cost-quality metrics: RouteLLM's two-model figures and RouterBench's dollar-axis frontier.

Two models (Ong et al., "RouteLLM: Learning to Route LLMs with Preference Data",
arXiv:2406.18665, section 2.2; code: lm-sys/RouteLLM ``routellm/evals/evaluate.py``):

* ``PGR = (r(router) - r(weak)) / (r(strong) - r(weak))``: the share of the quality gap
  between the weak and the strong model that a router recovers;
* ``APGR``: PGR averaged over the strong-call share from 0 to 1, the area under the
  router's curve of quality against strong-call share, normalised by the gap; RouteLLM
  computes it with the trapezoid rule over the measured points (``apgr_metric``);
* ``CPT(x%)``: the smallest share of calls to the strong model at which the router
  reaches a PGR of x% (``pct_call_metric``, which interpolates along the curve);
* the share of strong calls needed to reach 95% of the strong model's quality, the figure
  behind RouteLLM's "95% of GPT-4's performance" claims.

N models (Hu et al., "RouterBench: A Benchmark for Multi-LLM Routing System",
arXiv:2403.12031, section 3; code: withmartian/routerbench ``evaluation/AIQ.py``): a
router's points in (total cost, quality) space are summarised by their non-decreasing
convex hull, since any point between two operating points can be reached by choosing
between them at random; its area, normalised by the largest cost, is the AIQ.

Shares are fractions in [0, 1] (RouteLLM prints percentages). Every function here is pure
and takes plain sequences or numpy arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Curve = Sequence[tuple[float, float]]  # (x, quality) points, any order


def pgr(quality: float, weak: float, strong: float) -> float | None:
    """Performance gap recovered; None when the two models score the same."""
    gap = strong - weak
    return None if gap == 0 else (quality - weak) / gap


def _sorted(points: Curve) -> tuple[np.ndarray, np.ndarray]:
    arr = np.asarray(points, dtype=float).reshape(-1, 2)
    if len(arr) == 0:
        raise ValueError("a curve needs at least one point")
    if np.isnan(arr).any():
        raise ValueError("curve points must be numbers, not NaN")
    order = np.lexsort((arr[:, 1], arr[:, 0]))
    return arr[order, 0], arr[order, 1]


def apgr(curve: Curve, weak: float, strong: float) -> float | None:
    """Average PGR of a router's (strong share, quality) curve, RouteLLM's way.

    ``(AUC - weak * span) / ((strong - weak) * span)`` with the AUC taken by the trapezoid
    rule over the curve's strong-share span: the same figure as RouteLLM's ``apgr_metric``.
    A curve from share 0 to 1 gives the paper's integral of PGR over the share.
    """
    x, y = _sorted(curve)
    span = x[-1] - x[0]
    gap = strong - weak
    if span == 0 or gap == 0:
        return None
    auc = float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))
    return (auc - weak * span) / (gap * span)


def share_to_reach(curve: Curve, target: float) -> float | None:
    """The smallest x at which the piecewise-linear curve reaches ``target`` quality.

    Walks the curve from its cheapest point; None when no point reaches the target. On a
    curve whose quality rises with x this equals ``numpy.interp(target, quality, x)``, what
    RouteLLM computes.
    """
    x, y = _sorted(curve)
    if y[0] >= target:
        return float(x[0])
    for i in range(1, len(x)):
        if y[i] >= target:
            if y[i] == y[i - 1]:
                return float(x[i])
            t = (target - y[i - 1]) / (y[i] - y[i - 1])
            return float(x[i - 1] + t * (x[i] - x[i - 1]))
    return None


def cpt(curve: Curve, weak: float, strong: float, recovered: float) -> float | None:
    """Call-performance threshold: the strong share needed for a PGR of ``recovered``.

    ``cpt(curve, weak, strong, 0.5)`` is the paper's CPT(50%).
    """
    return share_to_reach(curve, weak + recovered * (strong - weak))


def strong_share_at(curve: Curve, strong: float, fraction: float = 0.95) -> float | None:
    """The strong share needed to reach ``fraction`` of the strong model's quality."""
    return share_to_reach(curve, fraction * strong)


def advantage_curve(
    advantage: np.ndarray, strong: np.ndarray, weak: np.ndarray
) -> list[tuple[float, float]]:
    """(strong share, mean quality) sending the rows of highest ``advantage`` to the strong
    model first, from share 0 to 1: one point per block of tied advantages (rounded to
    1e-9, so floating-point noise never splits a tie or orders tied rows), within a block
    in row order. ``strong`` and ``weak`` are each row's quality under either model."""
    n = len(advantage)
    adv = np.round(np.asarray(advantage, dtype=float), 9)
    order = np.lexsort((np.arange(n), -adv))
    gain = np.cumsum((np.asarray(strong) - np.asarray(weak))[order])
    ends = np.flatnonzero(np.diff(adv[order]) != 0).tolist() + [n - 1]
    base = float(np.sum(weak))
    return [(0.0, base / n)] + [((k + 1) / n, (base + float(gain[k])) / n) for k in ends]


def oracle_curve(strong: np.ndarray, weak: np.ndarray) -> list[tuple[float, float]]:
    """The best quality at each strong share: strong calls go where they gain most first
    and never where the strong model does worse (RouteLLM's ``get_optimal_accuracy``)."""
    strong, weak = np.asarray(strong, dtype=float), np.asarray(weak, dtype=float)
    return advantage_curve(strong - weak, np.maximum(strong, weak), weak)


def two_model_figures(curve: Curve, weak: float, strong: float) -> dict[str, float | None]:
    """APGR, CPT(50%), CPT(80%) and the strong share at 95% of strong quality."""
    return {
        "apgr": apgr(curve, weak, strong),
        "cpt50": cpt(curve, weak, strong, 0.5),
        "cpt80": cpt(curve, weak, strong, 0.8),
        "strong_share_at_95": strong_share_at(curve, strong, 0.95),
    }


def frontier(points: Curve) -> np.ndarray:
    """The non-decreasing convex hull of (cost, quality) points, sorted by cost.

    The upper hull from the cheapest point (the best quality at that cost) up to the point
    of highest quality, where it stops: spending more never lowers the frontier. RouterBench
    builds the same hull pairwise (``get_non_descreasing_convex_hull_of``).
    """
    x, y = _sorted(points)
    hull: list[tuple[float, float]] = []
    for px, py in zip(x.tolist(), y.tolist(), strict=True):
        if hull and hull[-1][0] == px:  # same cost: keep the better quality
            hull.pop()
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            # drop the middle point when it lies on or below the chord to the new point
            if (y2 - y1) * (px - x1) <= (py - y1) * (x2 - x1):
                hull.pop()
            else:
                break
        hull.append((px, py))
    best = max(range(len(hull)), key=lambda i: (hull[i][1], -hull[i][0]))
    return np.asarray(hull[: best + 1], dtype=float)


def frontier_at(hull: np.ndarray, cost: float) -> float | None:
    """Quality on a frontier at ``cost``: None below its cheapest point, flat past its end."""
    if cost < hull[0, 0]:
        return None
    return float(np.interp(cost, hull[:, 0], hull[:, 1]))


def frontier_area(points: Curve, max_cost: float | None = None) -> float | None:
    """RouterBench's AIQ: area under the frontier divided by ``max_cost``.

    The frontier is extended flat to ``max_cost`` (default: its own largest cost), as
    ``calc_AIQ`` does when it compares routers over the largest cost any of them reaches;
    pass the same ``max_cost`` to compare several routers. None when ``max_cost`` is 0.
    """
    hull = frontier(points)
    top = float(hull[-1, 0]) if max_cost is None else float(max_cost)
    if top <= 0:
        return None
    if top < hull[-1, 0]:
        raise ValueError(f"max_cost {top} is below the frontier's largest cost {hull[-1, 0]}")
    x = np.append(hull[:, 0], top)
    y = np.append(hull[:, 1], hull[-1, 1])
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2)) / top


def aiq(points: Curve, low: float, high: float) -> float | None:
    """Mean quality of the frontier of ``points`` over the cost range ``[low, high]``.

    RouterBench's AIQ as its paper defines it (the integral over ``[c_min, c_max]`` divided
    by ``c_max - c_min``), over one range given for every router compared, so their AIQs
    are comparable: below its cheapest point a router reaches no quality (0), past its
    dearest it stays flat. With ``low == high`` it is the frontier's quality there. None
    when ``high < low``.
    """
    if high < low:
        return None
    hull = frontier(points)
    if high == low:
        return frontier_at(hull, high) or 0.0
    start = max(low, float(hull[0, 0]))
    if start >= high:
        return 0.0
    inner = [x for x in hull[:, 0].tolist() if start < x < high]
    xs = np.asarray([start, *inner, high])
    ys = np.interp(xs, hull[:, 0], hull[:, 1])  # flat past the frontier's dearest point
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2)) / (high - low)
