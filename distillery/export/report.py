"""The export's readable report: parity figures per graph (Markdown table + PNG) beside the repository."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def parity_table(reports: list[dict[str, Any]]) -> str:
    lines = ["| graph | pairs | max abs logit diff | mean abs logit diff | label agreement | gate |",
             "|---|---:|---:|---:|---:|---|"]
    for r in reports:
        gate = "not gated" if r["tolerance"] is None else ("pass" if r["passed"] else "FAIL")
        lines.append(f"| {r['name']} | {r['n']} | {r['max_abs_diff']:.2e} | {r['mean_abs_diff']:.2e} | "
                     f"{100 * r['agreement']:.2f}% | {gate} |")
    return "\n".join(lines)


def write_export_report(repo: str | Path, version: int, entry: dict[str, Any], champion: int) -> Path:
    """``export-report-v<N>.md`` and ``.png`` at the repository root (Triton ignores top-level files)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root = Path(repo)
    png = root / f"export-report-v{version}.png"
    reports = entry.get("parity", [])
    fig, ax = plt.subplots(figsize=(6, 2.6))
    names = [r["name"] for r in reports]
    ax.barh(names, [max(r["max_abs_diff"], 1e-12) for r in reports], color="#4a7")
    ax.axvline(1e-4, color="#c33", linestyle="--", label="fp32 gate 1e-4")
    ax.set_xscale("log")
    ax.set_xlabel("max |logit difference| vs PyTorch")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    md = root / f"export-report-v{version}.md"
    role = "champion (`relevance`)" if champion == version else f"challenger (`relevance_v{version}`)"
    md.write_text("\n".join([
        f"# Export report: version {version}", "",
        f"- student: `{entry.get('student_dir')}` ({', '.join(entry['classes'])}; max_length {entry['max_length']})",
        f"- served graph: {entry.get('precision', 'fp32')} through `{entry['serve_with']}`; role: {role}",
        f"- ensembles: `relevance_v{version}`" + (", `relevance`" if champion == version else ""), "",
        "## Parity with the PyTorch student", "", parity_table(reports), "", f"![parity]({png.name})", "",
    ]), encoding="utf-8")
    return md
