"""A finished run's final metrics, read from the report the pipeline publishes under ``spec.output.uri``.

The end-to-end pipeline's publish step copies the report bundle to ``<output>/report/`` (see
``distillery.stages._io.publish``); its ``metrics.json`` holds each stage's metrics under
``stages``. The status gets them flattened to numbers (``student.macro_f1``, …), plus ``macro_f1``
of the student for the printer column.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

METRICS_PATH = "report/metrics.json"


class MetricsUnavailable(RuntimeError):
    """The metrics could not be read for a reason other than their absence (endpoint, credentials)."""


def final_metrics(doc: Mapping[str, Any]) -> dict[str, float]:
    """Numbers of the report's ``metrics.json``: ``<stage>.<name>`` and the student's ``macro_f1``."""
    out: dict[str, float] = {}
    for stage, values in sorted((doc.get("stages") or {}).items()):
        for key, value in sorted((values or {}).items()):
            if isinstance(value, int | float) and not isinstance(value, bool) and value == value:
                out[f"{stage}.{key}"] = float(value)
    if "student.macro_f1" in out:
        out["macro_f1"] = out["student.macro_f1"]
    return out


def read_final_metrics(output_uri: str) -> dict[str, float] | None:
    """The final metrics of the run that published to ``output_uri``; None when no report is there."""
    from distillery import storage

    uri = f"{output_uri.rstrip('/')}/{METRICS_PATH}"
    try:
        body = storage.read_object(uri)
    except storage.StorageError as exc:
        raise MetricsUnavailable(str(exc)) from exc
    if body is None:
        return None
    try:
        return final_metrics(json.loads(body))
    except (json.JSONDecodeError, AttributeError, TypeError) as exc:
        raise MetricsUnavailable(f"{uri}: not a metrics report ({exc})") from exc
