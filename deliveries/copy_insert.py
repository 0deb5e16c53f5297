"""Bulk INSERT by ``COPY``: a batch's attempts, a request's messages and deliveries, formatted in C.

Why not ``bulk_create``: on PostgreSQL, Django 5.2 sends a bulk insert as
``INSERT ... SELECT * FROM UNNEST(%s::type[], ...)`` through psycopg's
client-side binding, so every value of every column is quoted in Python, with
a regular expression per array element; and before that each row is a model
instance whose every field is prepared by ``get_db_prep_save``. For a batch
of 50 attempts that was a fifth of the worker's time, and most of ingest's.
``COPY ... FROM STDIN`` streams rows that psycopg's C extension formats, in the
same transaction, and the rows are plain mappings: no model instances.

COPY returns nothing, so when the caller needs the new ids they are taken
from the table's sequence first, in one statement, and written with the rows:
the ids a ``RETURNING`` would have given. A few rows go by ``bulk_create``
(COPY's own round trips cost more than quoting them); elsewhere than
PostgreSQL (the embedded SQLite of ``make run``) every insert does.

The contract is ``bulk_create``'s, minus the instances: no signals, no
``save()``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from django.db import connection, models
from django.utils import timezone

Row = Mapping[str, Any]

# Below this many rows an INSERT costs less than COPY's extra round trips.
COPY_MIN_ROWS = 8


def copy_insert(model: type[models.Model], rows: Sequence[Row], *, return_ids: bool = False) -> list[int]:
    """INSERT ``rows`` into ``model``'s table (a model with an automatic primary key).

    Each row maps field attnames (``delivery_id``, not ``delivery``) to values
    psycopg adapts as they are (str, int, aware datetime, None), except that a
    JSON field takes the Python value and is encoded as Django would. A field
    a row leaves out takes its default (``auto_now`` fields: now); an unknown
    name is an error. Returns the new rows' ids, in order, when ``return_ids``
    (else an empty list).
    """
    if not rows:
        return []
    fields = [f for f in model._meta.local_concrete_fields if not f.primary_key]
    unknown = set().union(*(row.keys() for row in rows)) - {f.attname for f in fields}
    if unknown:
        raise ValueError(f"{model.__name__} has no field(s) {sorted(unknown)}")
    if connection.vendor != "postgresql" or len(rows) < COPY_MIN_ROWS:
        created = model._default_manager.bulk_create([model(**row) for row in rows])
        return [obj.pk for obj in created] if return_ids else []
    pk = model._meta.pk
    ids = _next_ids(model, len(rows)) if return_ids else []
    # Per field, once: how a value is made ready (only JSON needs Django's
    # encoding; psycopg adapts the rest) and the default when a row has none.
    prepare = [(f.attname, _prep_of(f), _default_of(f)) for f in fields]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(cast(str, f.column)) for f in ([pk] if return_ids else []) + fields)
    sql = f"COPY {quote(model._meta.db_table)} ({columns}) FROM STDIN"
    # The copy is psycopg's own API: wrap its errors as Django wraps execute()'s
    # (an IntegrityError, a DatabaseError), which is what callers catch.
    with connection.cursor() as cursor, connection.wrap_database_errors, cursor.copy(sql) as copy:
        for index, row in enumerate(rows):
            values = [ids[index]] if return_ids else []
            for name, prep, default in prepare:
                value = row[name] if name in row else default()
                values.append(value if prep is None else prep(value, connection))
            copy.write_row(values)
    return ids


def _next_ids(model: type[models.Model], count: int) -> list[int]:
    """``count`` new ids from the sequence behind ``model``'s primary key."""
    table, column = model._meta.db_table, model._meta.pk.column
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [table, column, count],
        )
        return [pk for (pk,) in cursor.fetchall()]


def _prep_of(field: models.Field[Any, Any]) -> Callable[[Any, Any], Any] | None:
    return field.get_db_prep_save if isinstance(field, models.JSONField) else None


def _default_of(field: models.Field[Any, Any]) -> Callable[[], Any]:
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return timezone.now
    return field.get_default
