"""The sequential test's validity and power on known cases, SRM, and the interval helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from distillery.abtest import stats

ALPHA = 0.05


def _looks(rng: np.random.Generator, reps: int, looks: int, per_look: int, effect: float) -> np.ndarray:
    """(diff, var) of reps × looks two-arm experiments with N(0,1) and N(effect,1) users."""
    a = rng.normal(0.0, 1.0, (reps, looks * per_look))
    b = rng.normal(effect, 1.0, (reps, looks * per_look))
    n = per_look * np.arange(1, looks + 1)
    out = np.empty((reps, looks, 2))
    sa, sb = np.cumsum(a, 1)[:, n - 1], np.cumsum(b, 1)[:, n - 1]
    qa, qb = np.cumsum(a * a, 1)[:, n - 1], np.cumsum(b * b, 1)[:, n - 1]
    out[..., 0] = sb / n - sa / n
    out[..., 1] = (qb - sb * sb / n) / (n - 1) / n + (qa - sa * sa / n) / (n - 1) / n
    return out


def test_log_lr_matches_the_closed_form_mixture():
    # Λ = ∫ N(d; θ, V) N(θ; 0, τ²) dθ / N(d; 0, V)  — numerically integrated.
    d, v, t2 = 0.3, 0.02, 0.05
    theta = np.linspace(-3, 3, 200001)
    prior = np.exp(-theta ** 2 / (2 * t2)) / math.sqrt(2 * math.pi * t2)
    num = np.trapezoid(np.exp(-(d - theta) ** 2 / (2 * v)) * prior, theta)
    lam = num / math.exp(-d * d / (2 * v))
    assert stats.msprt_log_lr(d, v, t2) == pytest.approx(math.log(lam), rel=1e-6)


def test_confidence_sequence_excludes_zero_exactly_when_p_below_alpha():
    rng = np.random.default_rng(0)
    for d, v in zip(rng.normal(0, 0.2, 300), rng.uniform(1e-4, 0.05, 300), strict=True):
        lo, hi = stats.confidence_sequence(d, v, 0.01, ALPHA)
        assert (lo > 0 or hi < 0) == (stats.msprt_p_value(d, v, 0.01) < ALPHA)


def test_peeking_after_every_look_keeps_false_positives_below_alpha_but_not_the_naive_z_test():
    rng = np.random.default_rng(7)
    looks = _looks(rng, reps=1000, looks=40, per_look=100, effect=0.0)
    tau2 = 0.1 ** 2
    msprt = stats.msprt_p_values(looks[..., 0], looks[..., 1], tau2)
    assert msprt[3, 7] == pytest.approx(stats.msprt_p_value(*looks[3, 7], tau2))
    naive = 2 * norm.sf(np.abs(looks[..., 0]) / np.sqrt(looks[..., 1]))
    assert naive[3, 7] == pytest.approx(stats.z_test_p_value(*looks[3, 7]))
    fp_msprt = (msprt.min(1) < ALPHA).mean()
    fp_naive = (naive.min(1) < ALPHA).mean()
    assert fp_msprt <= ALPHA  # measured ≈0.01–0.02: Ville's bound is conservative
    assert fp_naive > 2 * ALPHA  # re-checking a fixed-horizon test inflates (≈0.25 here)


def test_a_real_effect_is_detected():
    rng = np.random.default_rng(8)
    looks = _looks(rng, reps=200, looks=40, per_look=100, effect=0.15)
    p = stats.msprt_p_values(looks[..., 0], looks[..., 1], 0.1 ** 2)
    assert (p.min(1) < ALPHA).mean() > 0.9


def test_srm_flags_a_mismatch_and_passes_a_fair_split():
    assert stats.srm_test([5000, 5000], [50, 50]) == pytest.approx(1.0)
    assert stats.srm_test([5200, 4800], [50, 50]) < 1e-3
    assert stats.srm_test([3010, 6990], [30, 70]) > 0.5
    assert stats.srm_test([100, 0, 100], [50, 0, 50]) == pytest.approx(1.0)  # a zero-weight arm is left out


def test_wilson_interval_brackets_the_rate():
    lo, hi = stats.wilson_interval(10, 200)
    assert lo < 0.05 < hi and lo > 0.02 and hi < 0.1
    assert stats.wilson_interval(0, 200)[0] == 0.0


def test_quantile_interval_covers_the_true_p99():
    rng = np.random.default_rng(3)
    true_p99 = float(np.exp(0.5 * 2.326))  # log-normal(0, 0.5)
    hits = 0
    for _ in range(400):
        lo, hi = stats.quantile_interval(rng.lognormal(0, 0.5, 500), 0.99, 0.05)
        hits += lo <= true_p99 <= hi
    assert hits / 400 >= 0.93
