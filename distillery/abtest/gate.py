"""The promotion gate: user-level metrics, SRM check, mSPRT, guardrails → promote | rollback | continue.

Call :meth:`Gate.check` after every batch of users; it is safe to do so as often as one likes because
the decision rests on always-valid p-values / confidence sequences (see :mod:`distillery.abtest.stats`).
Order of judgement, each step with its reason in the decision:

1. operational guardrails per challenger once each arm has ``min_requests``: error rate (failovers
   included) above the limit, or a latency-quantile ratio whose conservative bound (order-statistic
   intervals of both quantiles) exceeds the limit; a breach rolls that challenger back. These stay
   active under an SRM, since keeping a broken challenger is never the safer choice;
2. sample-ratio mismatch (chi-square of users per arm against the weights): blocks every decision
   drawn from user metrics;
3. minimum sample per arm;
4. the primary metric's confidence sequence above zero → promote (if no guardrail metric is
   significantly worse); below zero, or a guardrail metric significantly worse → rollback; else continue.

The sequential test's running state (per challenger and metric: the mixing variance fixed at the first
monitored look, the always-valid p-value so far, the last look's difference and variance, the looks
done) is :meth:`Gate.state`, plain JSON; a gate rebuilt with ``Gate(..., state=...)`` continues the test
where it stopped, which is how the operator keeps it in a ``RelevanceExperiment``'s status::

    gate = Gate(cfg, "champion", {"champion": 90, "challenger": 10}, state=status.get("gate"))
    decision = gate.check(table, ops)
    status["gate"] = gate.state()
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from distillery.abtest import stats
from distillery.abtest.metrics import UserTable
from distillery.config import ABTestConfig

LAST_LOOK = ("nChampion", "nChallenger", "diff", "var")
"""Sufficient statistics of the last monitored look kept in the state: sample sizes, difference, its variance."""


def user_metrics(table: UserTable) -> dict[str, np.ndarray]:
    """Per-user CTR (clicks per shown item), CVR (orders per search), GTV and mean NDCG."""
    sessions = np.maximum(table.column("sessions"), 1.0)
    return {
        "ctr": table.column("clicks") / np.maximum(table.column("shown"), 1.0),
        "cvr": table.column("conversions") / sessions,
        "gtv": table.column("gtv"),
        "ndcg": table.column("ndcg_sum") / sessions,
    }


@dataclass
class ArmOps:
    """What the splitter saw of one arm: requests, failures (failovers included) and latencies."""

    requests: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def add(self, latency_ms: float, failed: bool) -> None:
        self.requests += 1
        self.errors += int(failed)
        self.latencies_ms.append(latency_ms)

    def quantile(self, q: float) -> float:
        return float(np.quantile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


@dataclass
class Decision:
    """The gate's verdict with every figure it rests on."""

    decision: str
    reasons: list[str]
    challenger: str | None
    users: dict[str, int]
    srm_p: float
    arms: dict[str, dict[str, Any]]
    tests: dict[str, dict[str, Any]]
    guardrails: dict[str, dict[str, Any]]
    blocked: bool = False
    """True when a sample-ratio mismatch withheld the metric-based decision."""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Gate:
    """Sequential gate for one champion against one or more challengers."""

    def __init__(self, cfg: ABTestConfig, champion: str, weights: dict[str, float],
                 state: dict[str, Any] | None = None) -> None:
        if champion not in weights:
            raise ValueError(f"champion {champion!r} is not among the arms {list(weights)}")
        self.cfg = cfg
        self.champion = champion
        self.weights = dict(weights)
        self.challengers = [a for a, w in weights.items() if a != champion and w > 0]
        if not self.challengers:
            raise ValueError(f"no challenger receives traffic (weights {weights}): nothing to judge")
        # Bonferroni over challengers keeps the family-wise false-promotion rate at alpha.
        self.alpha = cfg.alpha / max(1, len(self.challengers))
        self.metrics = [cfg.primary_metric] + [m for m in cfg.guardrail_metrics if m != cfg.primary_metric]
        self._tau2: dict[tuple[str, str], float] = {}
        self._p_min: dict[tuple[str, str], float] = {}
        self._last: dict[tuple[str, str], dict[str, float]] = {}
        self.looks = 0
        self.history: list[dict[str, Any]] = []
        if state:
            self._restore(state)

    def state(self) -> dict[str, Any]:
        """The running state of the sequential tests (JSON): what a later gate needs to continue them."""
        tests: dict[str, dict[str, Any]] = {}
        for (c, m), tau2 in sorted(self._tau2.items()):
            tests.setdefault(c, {})[m] = {"tau2": tau2, "pMin": self._p_min.get((c, m), 1.0),
                                          **self._last.get((c, m), {})}
        return {"looks": self.looks, "alpha": self.alpha, "tests": tests}

    def _restore(self, state: dict[str, Any]) -> None:
        """Adopt :meth:`state` of an earlier gate; a malformed state is a ``ValueError`` naming the field."""
        try:
            looks, alpha, tests = int(state["looks"]), float(state["alpha"]), dict(state["tests"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"gate state: looks, alpha and tests are required ({exc!r})") from None
        if abs(alpha - self.alpha) > 1e-12:
            # A different alpha (spec.gate.alpha edited mid-test) is a different test: it cannot continue this one.
            raise ValueError(f"gate state: alpha {alpha:g} ≠ this gate's {self.alpha:g}")
        for c, per_metric in tests.items():
            for m, row in dict(per_metric or {}).items():
                if row is None or c not in self.challengers or m not in self.metrics:
                    continue  # deleted by a merge patch, or a test this gate does not run (it is dropped)
                try:
                    tau2, p_min = float(row["tau2"]), float(row["pMin"])
                except (KeyError, TypeError, ValueError) as exc:
                    raise ValueError(f"gate state: tests.{c}.{m}: tau2 and pMin must be numbers ({exc!r})") from None
                if not (tau2 > 0 and 0 <= p_min <= 1):
                    raise ValueError(f"gate state: tests.{c}.{m}: tau2={tau2!r} must be > 0, pMin={p_min!r} in [0, 1]")
                self._tau2[(c, m)], self._p_min[(c, m)] = tau2, p_min
                self._last[(c, m)] = {k: float(row[k]) for k in LAST_LOOK if k in row}
        self.looks = looks

    def check(self, table: UserTable, ops: dict[str, ArmOps] | None = None) -> Decision:
        """Judge the users seen so far (all of them, not only the last batch)."""
        ops = ops or {}
        self.looks += 1
        per_user = user_metrics(table)
        arms = np.asarray(table.arms)
        masks = {a: arms == a for a in self.weights}
        users = {a: int(m.sum()) for a, m in masks.items()}
        srm_p = stats.srm_test([users[a] for a in self.weights], list(self.weights.values()))
        arm_summary = {a: _summarise(per_user, masks[a], ops.get(a), self.cfg.latency_quantile) for a in self.weights}
        guards = {c: self._guardrails(ops, c) for c in self.challengers}
        tests = {c: self._tests(per_user, masks, c, sum(users.values())) for c in self.challengers}
        verdicts = {c: self._verdict(c, guards[c], tests[c], users, srm_p) for c in self.challengers}
        decision, winner, reasons = _combine(verdicts, tests, self.cfg.primary_metric)
        return Decision(decision, reasons, winner, users, srm_p, arm_summary, tests, guards,
                        blocked=srm_p < self.cfg.srm_alpha)

    def _guardrails(self, ops: dict[str, ArmOps], c: str) -> dict[str, Any]:
        champ, chall = ops.get(self.champion, ArmOps()), ops.get(c, ArmOps())
        q, a = self.cfg.latency_quantile, self.cfg.latency_alpha
        ratio = bound = float("nan")
        if champ.latencies_ms and chall.latencies_ms:
            ratio = chall.quantile(q) / champ.quantile(q)
            # Conservative ratio: the challenger's lower bound over the champion's upper bound.
            bound = stats.quantile_interval(chall.latencies_ms, q, a)[0] / stats.quantile_interval(
                champ.latencies_ms, q, a)[1]
        err = chall.errors / chall.requests if chall.requests else 0.0
        enough = min(champ.requests, chall.requests) >= self.cfg.min_requests
        return {"latency_ratio": ratio, "latency_ratio_lower": bound, "error_rate": err, "requests": chall.requests,
                "judged": enough, "latency_breach": bool(enough and bound > self.cfg.max_latency_ratio),
                "error_breach": bool(enough and err > self.cfg.max_error_rate)}

    def _tests(self, per_user: dict[str, np.ndarray], masks: dict[str, np.ndarray], c: str,
               total_users: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        n_min = min(int(masks[self.champion].sum()), int(masks[c].sum()))
        for m in self.metrics:
            a, b = per_user[m][masks[self.champion]], per_user[m][masks[c]]
            if min(len(a), len(b)) < 2:
                continue
            est = stats.diff_of_means(a, b)
            key = (c, m)
            monitoring = n_min >= self.cfg.min_users_per_arm
            if monitoring and key not in self._tau2:
                # Fixed once so the mixture (and hence the martingale) does not change between looks.
                scale = abs(est.mean_a) or stats.pooled_sd(a, b) or 1.0
                self._tau2[key] = (self.cfg.tau_rel * scale) ** 2
            tau2 = self._tau2.get(key, (self.cfg.tau_rel * (abs(est.mean_a) or 1.0)) ** 2)
            lo, hi = stats.confidence_sequence(est.diff, est.var, tau2, self.alpha)
            p_look = stats.msprt_p_value(est.diff, est.var, tau2)
            if monitoring:
                self._p_min[key] = min(self._p_min.get(key, 1.0), p_look)
                self._last[key] = {"nChampion": est.n_a, "nChallenger": est.n_b, "diff": est.diff, "var": est.var}
            row = {"metric": m, "champion_mean": est.mean_a, "challenger_mean": est.mean_b, "diff": est.diff,
                   "rel_lift": est.rel_lift, "cs_low": lo, "cs_high": hi, "p_always_valid": self._p_min.get(key, 1.0),
                   "p_naive_z": stats.z_test_p_value(est.diff, est.var), "monitoring": monitoring}
            zl, zh = stats.z_interval(est.diff, est.var, self.alpha)
            self.history.append({**row, "challenger": c, "users": total_users, "z_low": zl, "z_high": zh})
            out[m] = row
        return out

    def _verdict(self, c: str, guard: dict[str, Any], tests: dict[str, Any], users: dict[str, int],
                 srm_p: float) -> tuple[str, list[str]]:
        cfg = self.cfg
        if guard["error_breach"]:
            return "rollback", [f"{c}: error rate {guard['error_rate']:.2%} > {cfg.max_error_rate:.2%} "
                                f"over {guard['requests']} requests (failovers count against it)"]
        if guard["latency_breach"]:
            return "rollback", [f"{c}: p{cfg.latency_quantile * 100:g} latency {guard['latency_ratio']:.2f}× the "
                                f"champion's (at least {guard['latency_ratio_lower']:.2f}× with "
                                f"{1 - cfg.latency_alpha:.1%} confidence) > {cfg.max_latency_ratio:g}×"]
        if srm_p < cfg.srm_alpha:
            counts = ", ".join(f"{a}={n}" for a, n in users.items())
            return "blocked", [f"sample ratio mismatch: users {counts} against weights {self.weights} "
                               f"(chi-square p={srm_p:.2e} < {cfg.srm_alpha:g}); no decision until the "
                               "assignment/logging is fixed"]
        n = min(users[self.champion], users[c])
        if n < cfg.min_users_per_arm:
            return "continue", [f"{c}: minimum sample not reached ({n}/{cfg.min_users_per_arm} users per arm)"]
        return _metric_verdict(c, tests, cfg.primary_metric, self.alpha)


def _metric_verdict(c: str, tests: dict[str, Any], primary: str, alpha: float) -> tuple[str, list[str]]:
    def fmt(t: dict[str, Any]) -> str:
        return (f"{t['metric']} lift {t['diff']:+.4g} ({t['rel_lift']:+.2%}), {1 - alpha:.0%} confidence "
                f"sequence [{t['cs_low']:+.4g}, {t['cs_high']:+.4g}], always-valid p={t['p_always_valid']:.3g}")

    worse = [t for m, t in tests.items() if m != primary and t["cs_high"] < 0]
    if worse:
        return "rollback", [f"{c}: guardrail metric significantly worse: " + fmt(t) for t in worse]
    p = tests[primary]
    if p["cs_high"] < 0:
        return "rollback", [f"{c}: primary metric significantly worse: {fmt(p)}"]
    if p["cs_low"] > 0:
        return "promote", [f"{c}: primary metric significantly better: {fmt(p)}"]
    return "continue", [f"{c}: not yet conclusive: {fmt(p)}"]


def _combine(verdicts: dict[str, tuple[str, list[str]]], tests: dict[str, dict[str, Any]],
             primary: str) -> tuple[str, str | None, list[str]]:
    reasons = [r for _, rs in verdicts.values() for r in rs]
    kinds = {v for v, _ in verdicts.values()}
    winners = [c for c, (v, _) in verdicts.items() if v == "promote"]
    if winners:
        best = max(winners, key=lambda c: tests[c][primary]["diff"])
        return "promote", best, reasons
    if kinds == {"rollback"}:
        return "rollback", None, reasons
    return "continue", None, reasons


def _summarise(per_user: dict[str, np.ndarray], mask: np.ndarray, ops: ArmOps | None, q: float) -> dict[str, Any]:
    out: dict[str, Any] = {"users": int(mask.sum())}
    for m, vals in per_user.items():
        v = vals[mask]
        out[m] = float(v.mean()) if len(v) else float("nan")
        out[f"{m}_se"] = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")
    if ops is not None:
        out.update(requests=ops.requests, errors=ops.errors, p50_ms=ops.quantile(0.5), p99_ms=ops.quantile(q))
    return out
