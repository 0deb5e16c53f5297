"""Small statistics helpers: percentiles, and "warm up, then the median of several runs"."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: p99 of 100 samples is the 99th)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, round(pct / 100 * len(ordered) + 0.4999))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Measured:
    """The median of ``runs`` (each a dict of figures) and the runs themselves."""

    runs: list[dict[str, float]] = field(default_factory=list)

    def median(self, key: str) -> float:
        values = [r[key] for r in self.runs if key in r]
        return statistics.median(values) if values else float("nan")

    def as_dict(self) -> dict[str, object]:
        keys = sorted({k for r in self.runs for k in r})
        return {"median": {k: self.median(k) for k in keys}, "runs": self.runs}


def median_of(run: Callable[[], dict[str, float]], *, warmup: int, repeats: int, label: str) -> Measured:
    """Run ``warmup`` times (discarded: connection pools, caches, JIT-less Python imports),
    then ``repeats`` times; print each figure as it comes so a long run shows progress."""
    for _ in range(warmup):
        run()
    measured = Measured()
    for index in range(repeats):
        figures = run()
        measured.runs.append(figures)
        shown = ", ".join(f"{k}={v:.1f}" for k, v in figures.items())
        print(f"  {label} run {index + 1}/{repeats}: {shown}", flush=True)
    return measured
