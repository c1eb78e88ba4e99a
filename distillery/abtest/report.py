"""The experiment report: decision JSON, Markdown tables and PNG plots (lift with its confidence
sequence over users; per-arm metrics with standard errors)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from distillery.abtest.gate import Decision

METRIC_NAMES = {"ctr": "CTR (clicks / shown item)", "cvr": "CVR (orders / search)", "gtv": "GTV per user",
                "ndcg": "NDCG of shown lists"}


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN/inf become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def write_decision(decision: Decision, path: str | Path, extra: dict[str, Any] | None = None) -> None:
    body = {**decision.to_dict(), **(extra or {})}
    Path(path).write_text(json.dumps(_clean(body), indent=2) + "\n", encoding="utf-8")


def plot_lift(history: list[dict[str, Any]], metric: str, path: str | Path, title: str = "") -> None:
    """The primary metric's difference over users: the confidence sequence and the naive z interval."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for c in sorted({h["challenger"] for h in history}):
        rows = [h for h in history if h["challenger"] == c and h["metric"] == metric]
        if not rows:
            continue
        x = [h["users"] for h in rows]
        ax.plot(x, [h["diff"] for h in rows], label=f"{c}: difference")
        ax.fill_between(x, [h["cs_low"] for h in rows], [h["cs_high"] for h in rows], alpha=0.25,
                        label=f"{c}: always-valid confidence sequence")
        ax.plot(x, [h["z_low"] for h in rows], "k:", lw=0.8, label="naive fixed-horizon interval")
        ax.plot(x, [h["z_high"] for h in rows], "k:", lw=0.8)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xlabel("users so far (both arms)")
    ax.set_ylabel(f"challenger − champion: {METRIC_NAMES.get(metric, metric)}")
    ax.set_title(title or f"Lift of {metric} over the experiment")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_arms(decision: Decision, path: str | Path) -> None:
    """One panel per metric: each arm's mean with ±1.96 standard errors."""
    metrics = list(METRIC_NAMES)
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.2))
    arms = list(decision.arms)
    for ax, m in zip(axes, metrics, strict=True):
        means = [decision.arms[a][m] for a in arms]
        errs = [1.96 * (decision.arms[a][f"{m}_se"] or 0.0) for a in arms]
        ax.bar(arms, means, yerr=errs, capsize=4, color=["#4c72b0", "#dd8452", "#55a868", "#c44e52"][: len(arms)])
        ax.set_title(METRIC_NAMES[m], fontsize=9)
    fig.suptitle(f"Per-arm user-level metrics (decision: {decision.decision})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(decision: Decision, title: str, context: dict[str, Any] | None = None) -> str:
    """The readable report: decision and reasons, per-arm metrics, tests, guardrails."""
    lines = [f"# {title}", "", f"**Decision: `{decision.decision}`**"
             + (f" (challenger `{decision.challenger}`)" if decision.challenger else ""), ""]
    lines += [f"- {r}" for r in decision.reasons] + [""]
    for k, v in (context or {}).items():
        lines.append(f"- {k}: {v}")
    lines += ["", f"Sample-ratio check: users {decision.users}, chi-square p = {decision.srm_p:.3g}"
              + (" — **blocked**" if decision.blocked else ""), "", "## Per-arm metrics (per user)", "",
              "| arm | users | requests | errors | p50 ms | p99 ms | CTR | CVR | GTV | NDCG |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for a, s in decision.arms.items():
        lines.append(f"| {a} | {s['users']} | {s.get('requests', '')} | {s.get('errors', '')} | "
                     f"{s.get('p50_ms', float('nan')):.2f} | {s.get('p99_ms', float('nan')):.2f} | {s['ctr']:.4f} | "
                     f"{s['cvr']:.4f} | {s['gtv']:.2f} | {s['ndcg']:.4f} |")
    lines += ["", "## Sequential tests (challenger − champion)", "",
              "| challenger | metric | difference | relative | confidence sequence | always-valid p | naive z p |",
              "|---|---|---|---|---|---|---|"]
    for c, tests in decision.tests.items():
        for m, t in tests.items():
            lines.append(f"| {c} | {m} | {t['diff']:+.4g} | {t['rel_lift']:+.2%} | [{t['cs_low']:+.4g}, "
                         f"{t['cs_high']:+.4g}] | {t['p_always_valid']:.3g} | {t['p_naive_z']:.3g} |")
    lines += ["", "## Guardrails", "",
              "| challenger | latency-quantile ratio | conservative lower bound | error rate | requests | judged |",
              "|---|---|---|---|---|---|"]
    for c, g in decision.guardrails.items():
        lines.append(f"| {c} | {g['latency_ratio']:.2f} | {g['latency_ratio_lower']:.2f} | {g['error_rate']:.2%} | "
                     f"{g['requests']} | {g['judged']} |")
    lines += ["", "![lift](lift.png)", "", "![arms](arms.png)", ""]
    return "\n".join(lines)


def write_report(out: str | Path, decision: Decision, history: list[dict[str, Any]], primary: str,
                 title: str = "A/B experiment", context: dict[str, Any] | None = None) -> Path:
    """Write ``decision.json``, ``report.md``, ``lift.png`` and ``arms.png`` into ``out``."""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    write_decision(decision, d / "decision.json", {"context": context or {}, "primary_metric": primary})
    plot_lift(history, primary, d / "lift.png")
    plot_arms(decision, d / "arms.png")
    (d / "report.md").write_text(markdown(decision, title, context), encoding="utf-8")
    return d / "report.md"
