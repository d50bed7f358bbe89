"""RouteLLM's two-model figures and RouterBench's frontier, on curves worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from routedllm.evaluation.metrics import (
    apgr,
    cpt,
    frontier,
    frontier_area,
    frontier_at,
    pgr,
    strong_share_at,
    two_model_figures,
)

WEAK, STRONG = 0.6, 0.8


def test_pgr_is_the_share_of_the_gap_recovered() -> None:
    assert pgr(0.7, WEAK, STRONG) == pytest.approx(0.5)
    assert pgr(0.8, WEAK, STRONG) == pytest.approx(1.0)
    assert pgr(0.7, 0.5, 0.5) is None


def test_random_router_line_has_apgr_one_half() -> None:
    line = [(x, WEAK + x * (STRONG - WEAK)) for x in np.linspace(0, 1, 11)]
    assert apgr(line, WEAK, STRONG) == pytest.approx(0.5)
    assert cpt(line, WEAK, STRONG, 0.5) == pytest.approx(0.5)
    assert cpt(line, WEAK, STRONG, 0.8) == pytest.approx(0.8)


def test_apgr_matches_routellm_trapezoid_formula() -> None:
    # points out of order on purpose: the metric sorts by strong share
    curve = [(1.0, 0.8), (0.0, 0.6), (0.5, 0.78), (0.25, 0.72)]
    auc = 0.25 * (0.6 + 0.72) / 2 + 0.25 * (0.72 + 0.78) / 2 + 0.5 * (0.78 + 0.8) / 2
    assert apgr(curve, WEAK, STRONG) == pytest.approx((auc - 0.6) / (0.8 - 0.6))


def test_cpt_interpolates_on_the_first_segment_reaching_the_target() -> None:
    curve = [(0.0, 0.6), (0.25, 0.72), (0.5, 0.78), (1.0, 0.8)]
    # PGR 50% = quality 0.70, reached inside the first segment: 0.25 * (0.10 / 0.12)
    assert cpt(curve, WEAK, STRONG, 0.5) == pytest.approx(0.25 * 0.10 / 0.12)
    assert cpt(curve, WEAK, STRONG, 0.5) == pytest.approx(
        np.interp(0.70, [p[1] for p in curve], [p[0] for p in curve])
    )
    # 95% of the strong model = 0.76: second segment
    assert strong_share_at(curve, STRONG, 0.95) == pytest.approx(0.25 + 0.25 * (0.04 / 0.06))


def test_cpt_on_a_curve_that_dips_takes_the_first_crossing() -> None:
    curve = [(0.0, 0.6), (0.2, 0.75), (0.4, 0.65), (1.0, 0.8)]
    assert cpt(curve, WEAK, STRONG, 0.5) == pytest.approx(0.2 * 0.10 / 0.15)


def test_unreachable_target_is_none() -> None:
    assert cpt([(0.0, 0.6), (1.0, 0.7)], WEAK, STRONG, 0.8) is None


def test_two_model_figures_names() -> None:
    figures = two_model_figures([(0, 0.6), (1, 0.8)], WEAK, STRONG)
    assert set(figures) == {"apgr", "cpt50", "cpt80", "strong_share_at_95"}
    assert figures["strong_share_at_95"] == pytest.approx((0.76 - 0.6) / 0.2)


def test_frontier_keeps_the_non_decreasing_upper_hull() -> None:
    points = [(1.0, 0.5), (2.0, 0.55), (3.0, 0.8), (2.5, 0.9), (5.0, 0.85), (4.0, 0.95), (1.0, 0.4)]
    hull = frontier(points)
    # (2, 0.55) lies under the chord from (1, 0.5) to (2.5, 0.9); (3, 0.8) under the
    # chord to (4, 0.95); (5, 0.85) is dearer and worse than (4, 0.95)
    assert hull.tolist() == [[1.0, 0.5], [2.5, 0.9], [4.0, 0.95]]


def test_frontier_at_interpolates_and_is_flat_past_the_end() -> None:
    hull = frontier([(1.0, 0.5), (3.0, 0.9)])
    assert frontier_at(hull, 2.0) == pytest.approx(0.7)
    assert frontier_at(hull, 10.0) == pytest.approx(0.9)
    assert frontier_at(hull, 0.5) is None


def test_frontier_area_is_routerbench_aiq() -> None:
    points = [(1.0, 0.5), (2.0, 0.8), (4.0, 0.9)]
    assert frontier_area(points) == pytest.approx((0.65 + 1.7) / 4)
    # extended flat to a shared max cost for comparison with other routers
    assert frontier_area(points, 5.0) == pytest.approx((0.65 + 1.7 + 0.9) / 5)
    with pytest.raises(ValueError, match="below the frontier"):
        frontier_area(points, 3.0)


def test_bad_curves_raise() -> None:
    with pytest.raises(ValueError, match="at least one point"):
        frontier([])
    with pytest.raises(ValueError, match="NaN"):
        apgr([(0, float("nan")), (1, 0.8)], WEAK, STRONG)


def test_aiq_is_mean_quality_over_one_cost_range_for_every_router() -> None:
    from routedllm.evaluation.metrics import aiq

    cheap_start = [(1.0, 0.6), (3.0, 0.8)]
    late_start = [(2.0, 0.9)]
    # over [1, 3]: 0.6 -> 0.8 linearly = 0.7; the late router reaches nothing below 2
    assert aiq(cheap_start, 1.0, 3.0) == pytest.approx(0.7)
    assert aiq(late_start, 1.0, 3.0) == pytest.approx(0.9 * 1 / 2)
    # a router flat over the whole range scores its quality
    assert aiq([(1.0, 0.5)], 1.0, 3.0) == pytest.approx(0.5)
    assert aiq([(1.0, 0.5)], 2.0, 2.0) == pytest.approx(0.5)
    assert aiq([(1.0, 0.5)], 3.0, 2.0) is None


def test_advantage_curves_move_float_noise_ties_as_one_block() -> None:
    from routedllm.evaluation.metrics import advantage_curve, oracle_curve

    adv = np.asarray([0.1 + 0.2, 0.3, 0.0])  # the first two are tied but for noise
    strong, weak = np.asarray([1.0, 0.0, 1.0]), np.asarray([0.0, 0.0, 1.0])
    curve = advantage_curve(adv, strong, weak)
    assert [x for x, _ in curve] == pytest.approx([0.0, 2 / 3, 1.0])
    # the oracle: rows where strong gains go first, never where it loses
    best = oracle_curve(np.asarray([1.0, 0.0, 1.0]), np.asarray([0.0, 1.0, 1.0]))
    assert best[-1][1] == pytest.approx(1.0)
