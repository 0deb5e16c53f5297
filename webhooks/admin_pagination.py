"""A paginator for admin lists over large tables that never runs a full COUNT(*).

Django's admin counts the filtered rows on every change-list page. On a
delivery history of millions of rows that count reads every matching index
entry and dominates the page. ``EstimatedCountPaginator`` instead:

1. counts at most ``exact_limit + 1`` rows (``SELECT COUNT(*) FROM (… LIMIT n)``),
   so small results are exact and the cost is bounded;
2. past that, asks PostgreSQL's planner how many rows the filtered query
   returns (``EXPLAIN``, which plans but does not run it) and reports that
   as an estimate (``is_estimate``), never less than what was counted.

Pages past the estimated end are allowed (they may exist) and render empty
when they do not; a page whose OFFSET PostgreSQL's bigint cannot hold is
invalid. On databases without a JSON ``EXPLAIN`` (SQLite in development) the
estimate is just "more than ``exact_limit``".
"""

from __future__ import annotations

import json
import logging
from functools import cached_property
from typing import Any

from django.core.paginator import EmptyPage, PageNotAnInteger, Paginator
from django.db import DatabaseError, connections
from django.db.models import QuerySet

from config.numbers import MAX_BIGINT, NumberRejected, parse_int

logger = logging.getLogger(__name__)

DEFAULT_EXACT_LIMIT = 1000


class EstimatedCountPaginator(Paginator):  # type: ignore[type-arg]  # generic only in django-stubs
    """Paginator whose ``count`` is exact up to ``exact_limit`` rows and estimated above."""

    exact_limit = DEFAULT_EXACT_LIMIT

    def __init__(self, object_list: Any, per_page: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(object_list, per_page, *args, **kwargs)
        self.is_estimate = False

    @cached_property
    def count(self) -> int:
        qs = self.object_list
        if not isinstance(qs, QuerySet):
            return len(qs)
        bounded = qs.values("pk").order_by()[: self.exact_limit + 1].count()
        if bounded <= self.exact_limit:
            return bounded
        self.is_estimate = True
        return max(self.exact_limit + 1, planner_estimate(qs))

    def validate_number(self, number: Any) -> int:
        """Any page from 1 up when the count is an estimate (the last page is not
        known), as long as its OFFSET fits PostgreSQL's bigint; InvalidPage
        otherwise, which the admin answers as Django does for any bad page."""
        if not self.is_estimate_count():
            return super().validate_number(number)
        last = MAX_BIGINT // self.per_page
        try:
            return parse_int(str(number), minimum=1, maximum=last)
        except NumberRejected as exc:
            if exc.out_of_range:
                raise EmptyPage(f"That page number is not from 1 to {last}") from exc
            raise PageNotAnInteger("That page number is not an integer") from exc

    def page(self, number: Any) -> Any:
        if not self.is_estimate_count():
            return super().page(number)
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        # No clamping to the (estimated) count: a page past it shows what is there.
        return self._get_page(self.object_list[bottom : bottom + self.per_page], number, self)  # type: ignore[attr-defined]  # Paginator's page hook, not in django-stubs

    def is_estimate_count(self) -> bool:
        """Whether ``count`` is an estimate (computes the count on first use)."""
        _ = self.count
        return self.is_estimate


def planner_estimate(qs: QuerySet[Any]) -> int:
    """PostgreSQL's estimated row count of ``qs`` without running it (0 if unknown)."""
    connection = connections[qs.db]
    if connection.vendor != "postgresql":
        return 0
    try:
        plan = json.loads(qs.order_by().explain(format="json"))
        return int(plan[0]["Plan"]["Plan Rows"])
    except (DatabaseError, ValueError, KeyError, IndexError, TypeError):
        logger.warning("could not estimate the row count of an admin list", exc_info=True)
        return 0
