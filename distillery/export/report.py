"""The export's readable report: parity figures per graph (Markdown table + PNG) beside the repository, the CPU
they were measured on, the precision each graph really ran, and any precision the gate refused (with why)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def parity_table(reports: list[dict[str, Any]]) -> str:
    lines = ["| graph | ran | pairs | max abs logit diff | mean abs logit diff | label agreement | bounds | gate |",
             "|---|---|---:|---:|---:|---:|---|---|"]
    for r in reports:
        tol, agree = r.get("tolerance"), r.get("min_agreement")
        bounds = ", ".join(([f"≥ {100 * agree:.2f}%"] if agree is not None else [])
                           + ([f"≤ {tol:.0e}"] if tol is not None else [])) or "none"
        gate = "not gated" if tol is None and agree is None else ("pass" if r["passed"] else "FAIL")
        lines.append(f"| {r['name']} | {r.get('ran', 'fp32')} | {r['n']} | {r['max_abs_diff']:.2e} | "
                     f"{r['mean_abs_diff']:.2e} | {100 * r['agreement']:.2f}% | {bounds} | {gate} |")
    return "\n".join(lines)


def hardware_line(info: dict[str, Any] | None) -> str:
    """``distillery.hardware.describe()`` as one line (model, CPUs, ISA traits, tracked flags)."""
    if not info:
        return "not recorded"
    traits = [info.get("isa", "?"), "bf16 native" if info.get("bf16_native") else "no native bf16",
              "int8 VNNI" if info.get("int8_vnni") else "no int8 VNNI"]
    flags = " ".join(info.get("flags", []))
    return f"{info.get('model')} ({info.get('cpus')} CPUs; {', '.join(traits)}; flags: {flags})"


def _profile_line(p: dict[str, int]) -> str:
    return f"{p['min_batch']}/{p['opt_batch']}/{p['max_batch']} × {p['min_seq']}/{p['opt_seq']}/{p['max_seq']}"


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
    runtime = entry.get("runtime", {})
    requested = entry.get("requested_precision", entry.get("precision", "fp32"))
    quant = runtime.get("quantization")
    refused = [f"- **{r['precision']} refused**: {r['reason']}; the version serves "
               f"{entry.get('precision', 'fp32')} instead" for r in entry.get("refused", [])]
    md.write_text("\n".join([
        f"# Export report: version {version}", "",
        f"- student: `{entry.get('student_dir')}` ({', '.join(entry['classes'])}; max_length {entry['max_length']})",
        f"- served graph: {entry.get('precision', 'fp32')} on {runtime.get('engine', 'onnxruntime')} through "
        f"`{entry['serve_with']}` (requested: {requested}); role: {role}",
        *([f"- int8 quantiser: {', '.join(f'{k}={v}' for k, v in quant.items())}"] if quant else []),
        f"- ensembles: `relevance_v{version}`" + (", `relevance`" if champion == version else ""),
        *([f"- graph per model: {', '.join(f'`{m}` {g}' for m, g in entry['graphs'].items())}"]
          if entry.get("graphs") else []),
        *([f"- TensorRT profile (batch × sequence, min/opt/max): {_profile_line(entry['tensorrt']['profile'])}; "
           "`model.plan` is built from the plain graph on a GPU node (`distillery.export.plan`)"]
          if entry.get("tensorrt") else []),
        f"- gate measured on: {hardware_line(entry.get('hardware'))}", "",
        "## Parity with the PyTorch student", "",
        "Every graph that can be served is gated against its own bounds; `ran` is the precision the engine really "
        "ran on the CPU above.", "", parity_table(reports), "", *([*refused, ""] if refused else []),
        f"![parity]({png.name})", "",
    ]), encoding="utf-8")
    return md
