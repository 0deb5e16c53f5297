"""The admin's change list, reading its query string strictly.

Django's ``ChangeList`` reads ``?p=`` with ``int()`` (``?p=٣`` is page 3) and
hands filter values to the database as they come, so a NUL
(``?status__exact=%00``) reaches PostgreSQL, which refuses it with an error the
admin answers with a 500. ``StrictChangeList`` reads the page with the strict
number parser and treats a NUL in a filter value as the invalid lookup it is.
Both then get Django's own answers: an unreadable page is page 1, a page past
the end or an invalid lookup redirects to ``?e=1``.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import PAGE_VAR, ChangeList
from django.http import HttpRequest

from config.numbers import MAX_BIGINT, NumberRejected, parse_int


class StrictChangeList(ChangeList):
    def get_filters(self, request: HttpRequest) -> Any:
        for values in self.get_filters_params().values():
            if any("\x00" in value for value in values):
                raise IncorrectLookupParameters("a filter value holds NUL")
        return super().get_filters(request)

    def get_results(self, request: HttpRequest) -> None:
        raw = request.GET.get(PAGE_VAR)
        if raw is not None:
            try:
                # A huge page is clamped, so the paginator answers it as past the end.
                self.page_num = parse_int(raw, minimum=-MAX_BIGINT, maximum=MAX_BIGINT, saturate=True)
            except NumberRejected:
                self.page_num = 1
        super().get_results(request)


class StrictQueryAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # generic only in django-stubs
    """A ModelAdmin whose change list is a ``StrictChangeList``: the base of every admin here."""

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return StrictChangeList
