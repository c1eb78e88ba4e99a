"""A minimal Prometheus text-format (0.0.4) registry: labelled counters, gauges and histograms.

Hand-written rather than ``prometheus_client`` to keep the splitter's dependencies to aiohttp; the
exposition follows https://prometheus.io/docs/instrumenting/exposition_formats/ (HELP/TYPE lines,
cumulative ``_bucket{le=...}`` with ``+Inf``, ``_sum`` and ``_count``). Updated from the event loop
only, so no locking is needed.
"""

from __future__ import annotations

import bisect
import math

LabelKey = tuple[tuple[str, str], ...]
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(key: LabelKey, extra: tuple[tuple[str, str], ...] = ()) -> str:
    items = key + extra
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in items) + "}" if items else ""


def _num(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    f = float(v)
    return str(int(f)) if f.is_integer() and abs(f) < 1e15 else repr(f)


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str) -> None:
        self.name, self.help = name, help_text

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str) -> None:
        super().__init__(name, help_text)
        self.values: dict[LabelKey, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        self.values[key] = self.values.get(key, 0.0) + amount

    def get(self, **labels: str) -> float:
        return self.values.get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> list[str]:
        return self.header() + [f"{self.name}{_labels(k)} {_num(v)}" for k, v in sorted(self.values.items())]


class Gauge(Counter):
    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        self.values[tuple(sorted(labels.items()))] = float(value)

    def clear(self) -> None:
        self.values.clear()


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...]) -> None:
        super().__init__(name, help_text)
        self.bounds = tuple(sorted(buckets))
        self.series: dict[LabelKey, tuple[list[int], list[float]]] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        counts, sums = self.series.setdefault(key, ([0] * (len(self.bounds) + 1), [0.0]))
        counts[bisect.bisect_left(self.bounds, value)] += 1
        sums[0] += value

    def render(self) -> list[str]:
        out = self.header()
        for key, (counts, sums) in sorted(self.series.items()):
            cum = 0
            for bound, c in zip((*self.bounds, math.inf), counts, strict=True):
                cum += c
                out.append(f"{self.name}_bucket{_labels(key, (('le', _num(bound)),))} {cum}")
            out.append(f"{self.name}_sum{_labels(key)} {_num(sums[0])}")
            out.append(f"{self.name}_count{_labels(key)} {cum}")
        return out


class Registry:
    """Metrics in registration order; ``render()`` is the body of ``GET /metrics``."""

    def __init__(self) -> None:
        self.metrics: list[_Metric] = []

    def counter(self, name: str, help_text: str) -> Counter:
        m = Counter(name, help_text)
        self.metrics.append(m)
        return m

    def gauge(self, name: str, help_text: str) -> Gauge:
        m = Gauge(name, help_text)
        self.metrics.append(m)
        return m

    def histogram(self, name: str, help_text: str, buckets: tuple[float, ...]) -> Histogram:
        m = Histogram(name, help_text, buckets)
        self.metrics.append(m)
        return m

    def render(self) -> str:
        lines: list[str] = []
        for m in self.metrics:
            lines += m.render()  # type: ignore[attr-defined]
        return "\n".join(lines) + "\n"
