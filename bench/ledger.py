"""The ledger: every accepted (message, endpoint) pair must reach the receiver.

A run's figures count only if nothing accepted was lost; duplicates (the same
``webhook-id`` at the same path twice) are allowed by at-least-once delivery but
counted and reported.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from bench.receivers import Arrival

Key = tuple[str, str]  # (webhook-id, receiver path)


@dataclass(frozen=True)
class LedgerResult:
    """What a run's receiver log says about its accepted pairs."""

    name: str
    expected: int
    received: int
    lost: int
    duplicates: int
    missing_sample: tuple[Key, ...] = ()

    @property
    def ok(self) -> bool:
        return self.lost == 0

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "expected": self.expected,
            "received": self.received,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "ok": self.ok,
            "missing_sample": [list(k) for k in self.missing_sample],
        }


def check(name: str, expected: Iterable[Key], arrivals: Iterable[Arrival]) -> LedgerResult:
    """Compare accepted pairs with 2xx arrivals; arrivals outside ``expected`` are ignored
    (they belong to other runs sharing the receiver, or to failing endpoints)."""
    wanted = set(expected)
    counts = Counter((a.webhook_id, a.path) for a in arrivals if 200 <= a.status < 300)
    got = {k for k in counts if k in wanted}
    missing = sorted(wanted - got)
    return LedgerResult(
        name=name,
        expected=len(wanted),
        received=len(got),
        lost=len(missing),
        duplicates=sum(c - 1 for k, c in counts.items() if k in wanted and c > 1),
        missing_sample=tuple(missing[:5]),
    )


class Ledgers:
    """All ledger results of one benchmark run."""

    def __init__(self) -> None:
        self.results: list[LedgerResult] = []

    def add(self, result: LedgerResult) -> LedgerResult:
        self.results.append(result)
        return result

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def totals(self) -> dict[str, int]:
        return {
            "runs": len(self.results),
            "expected": sum(r.expected for r in self.results),
            "lost": sum(r.lost for r in self.results),
            "duplicates": sum(r.duplicates for r in self.results),
        }
