"""Sequential and fixed-horizon tests on the difference of two arms' user-level means.

The primary test is the **mixture sequential probability ratio test** (mSPRT) with a normal mixing
distribution (Robbins 1970; Johari, Pekelis & Walsh, "Always Valid Inference", 2017). For a
difference estimate ``d`` with variance ``V = s_a²/n_a + s_b²/n_b`` and mixing variance ``τ²``:

    Λ = sqrt(V / (V + τ²)) · exp(d² τ² / (2 V (V + τ²)))

``Λ`` is a non-negative martingale under H0 (d = 0), so by Ville's inequality ``P(sup Λ ≥ 1/α) ≤ α``:
the *always-valid* p-value ``p_n = min(p_{n-1}, 1/Λ_n)`` may be checked after every batch without
inflating the false-positive rate. Inverting the same mixture gives a confidence *sequence*

    d ± sqrt(V (V + τ²) / τ² · (2 log(1/α) + log((V + τ²) / V)))

that covers the true difference at every check simultaneously with probability ≥ 1 − α. The variance
is a plug-in estimate, which makes the guarantee asymptotic (Waudby-Smith et al. 2023, "Time-uniform
central limit theory"); the gate therefore also enforces a minimum sample before any decision.

The naive comparison (a fixed-horizon two-sample z-test re-checked after every batch) is kept here
too: the A/A benchmark uses it to show the inflation that peeking causes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps


@dataclass(frozen=True)
class DiffEstimate:
    """Difference of two independent sample means (challenger − champion) and its variance."""

    mean_a: float
    mean_b: float
    n_a: int
    n_b: int
    diff: float
    var: float

    @property
    def rel_lift(self) -> float:
        """``diff / mean_a`` (NaN where the champion's mean is zero)."""
        return self.diff / self.mean_a if self.mean_a else float("nan")


def diff_of_means(a: np.ndarray, b: np.ndarray) -> DiffEstimate:
    """Challenger (``b``) minus champion (``a``) with the unpooled (Welch) variance of the difference."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"need at least 2 users per arm, got {len(a)} and {len(b)}")
    var = float(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b))
    return DiffEstimate(float(np.mean(a)), float(np.mean(b)), len(a), len(b), float(np.mean(b) - np.mean(a)), var)


def pooled_sd(a: np.ndarray, b: np.ndarray) -> float:
    """Standard deviation of the per-user metric over both arms (scales the mixing variance)."""
    return float(np.std(np.concatenate([a, b]), ddof=1))


def msprt_log_lr(diff: float, var: float, tau2: float) -> float:
    """log Λ of the normal-mixture SPRT for a difference ``diff`` with variance ``var`` (see module doc)."""
    if var <= 0 or tau2 <= 0:
        return 0.0
    return 0.5 * math.log(var / (var + tau2)) + diff * diff * tau2 / (2.0 * var * (var + tau2))


def msprt_p_value(diff: float, var: float, tau2: float) -> float:
    """``min(1, 1/Λ)`` for one look; the always-valid p-value is the running minimum over looks."""
    return float(min(1.0, math.exp(-msprt_log_lr(diff, var, tau2))))


def msprt_p_values(diff: np.ndarray, var: np.ndarray, tau2: float) -> np.ndarray:
    """Vectorised ``msprt_p_value`` over arrays of looks (simulation studies)."""
    d, v = np.asarray(diff, dtype=float), np.asarray(var, dtype=float)
    log_lr = 0.5 * np.log(v / (v + tau2)) + d * d * tau2 / (2.0 * v * (v + tau2))
    return np.minimum(1.0, np.exp(-log_lr))


def confidence_sequence(diff: float, var: float, tau2: float, alpha: float) -> tuple[float, float]:
    """The (1 − α) normal-mixture confidence sequence around ``diff`` at this look."""
    if var <= 0:
        return diff, diff
    half = math.sqrt(var * (var + tau2) / tau2 * (2.0 * math.log(1.0 / alpha) + math.log((var + tau2) / var)))
    return diff - half, diff + half


def z_test_p_value(diff: float, var: float) -> float:
    """Two-sided fixed-horizon z-test p-value (valid only if looked at once)."""
    if var <= 0:
        return 1.0 if diff == 0 else 0.0
    return float(2.0 * sps.norm.sf(abs(diff) / math.sqrt(var)))


def z_interval(diff: float, var: float, alpha: float) -> tuple[float, float]:
    """Fixed-horizon (1 − α) interval, for comparison with the confidence sequence."""
    half = float(sps.norm.ppf(1 - alpha / 2)) * math.sqrt(max(var, 0.0))
    return diff - half, diff + half


def srm_test(counts: list[int], weights: list[float]) -> float:
    """Sample-ratio-mismatch p-value: chi-square goodness of fit of users per arm to the weights.

    Arms with zero weight are left out (they should receive nobody; any user there is a mismatch
    that ``counts`` of the others already reveal).
    """
    if len(counts) != len(weights):
        raise ValueError(f"{len(counts)} counts for {len(weights)} weights")
    obs = np.array([c for c, w in zip(counts, weights, strict=True) if w > 0], dtype=float)
    w = np.array([w for w in weights if w > 0], dtype=float)
    total = obs.sum()
    if total == 0 or len(obs) < 2:
        return 1.0
    expected = total * w / w.sum()
    chi2 = float(((obs - expected) ** 2 / expected).sum())
    return float(sps.chi2.sf(chi2, len(obs) - 1))


def quantile_interval(samples: np.ndarray | list[float], q: float, alpha: float) -> tuple[float, float]:
    """Distribution-free (1 − α) interval of the ``q`` quantile from order statistics.

    The number of samples below the true quantile is Binomial(n, q), so the order statistics at that
    binomial's α/2 and 1 − α/2 ranks bracket it; with few samples the upper end is the maximum.
    """
    x = np.sort(np.asarray(samples, dtype=float))
    n = len(x)
    if n == 0:
        return float("nan"), float("nan")
    lo_rank = int(sps.binom.ppf(alpha / 2, n, q))  # 0-based index of the lower bound
    hi_rank = int(sps.binom.ppf(1 - alpha / 2, n, q))
    return float(x[max(lo_rank - 1, 0)]), float(x[min(hi_rank, n - 1)])


def wilson_interval(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (the A/A false-promotion rate's CI)."""
    if n == 0:
        return 0.0, 1.0
    z = float(sps.norm.ppf(1 - alpha / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi
