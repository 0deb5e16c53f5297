"""Bulk INSERT by ``COPY``: the attempts of a batch in one statement, formatted in C.

Why not ``bulk_create``: on PostgreSQL, Django 5.2 sends a bulk insert as
``INSERT ... SELECT * FROM UNNEST(%s::type[], ...)`` through psycopg's
client-side binding, so every value of every column is quoted in Python, with
a regular expression per array element; and before that each row is a model
instance whose every field is prepared by ``get_db_prep_save``. For a batch
of 50 attempts that was a fifth of the worker's time. ``COPY ... FROM STDIN``
streams rows that psycopg's C extension formats, in the same transaction, and
the rows are plain mappings: no model instances.

The contract is ``bulk_create``'s, minus the primary keys and the instances:
no signals, no ``save()``, no ids back, so use it for rows nothing reads back
in the same unit of work. Elsewhere than PostgreSQL (the embedded SQLite of
``make run``) it is ``bulk_create``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db import connection, models

Row = Mapping[str, Any]


def copy_insert(model: type[models.Model], rows: Sequence[Row]) -> None:
    """INSERT ``rows`` into ``model``'s table (a model with an automatic primary key).

    Each row maps field attnames (``delivery_id``, not ``delivery``) to values
    psycopg adapts as they are (str, int, aware datetime, None), except that a
    JSON field takes the Python value and is encoded as Django would. A field
    a row leaves out takes its default; an unknown name is an error.
    """
    if not rows:
        return
    fields = [f for f in model._meta.local_concrete_fields if not f.primary_key]
    unknown = set().union(*(row.keys() for row in rows)) - {f.attname for f in fields}
    if unknown:
        raise ValueError(f"{model.__name__} has no field(s) {sorted(unknown)}")
    if connection.vendor != "postgresql":
        model._default_manager.bulk_create([model(**row) for row in rows])
        return
    # Per field, once: how a value is made ready (only JSON needs Django's
    # encoding; psycopg adapts the rest) and the default when a row has none.
    prepare = [
        (f.attname, f.get_db_prep_save if isinstance(f, models.JSONField) else None, f.get_default)
        for f in fields
    ]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    sql = f"COPY {quote(model._meta.db_table)} ({columns}) FROM STDIN"
    # The copy is psycopg's own API: wrap its errors as Django wraps execute()'s
    # (an IntegrityError, a DatabaseError), which is what callers catch.
    with connection.cursor() as cursor, connection.wrap_database_errors, cursor.copy(sql) as copy:
        for row in rows:
            values = []
            for name, prep, default in prepare:
                value = row[name] if name in row else default()
                values.append(value if prep is None else prep(value, connection))
            copy.write_row(values)
