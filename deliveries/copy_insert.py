"""Bulk INSERT by ``COPY``: the attempts of a batch in one statement, formatted in C.

Why not ``bulk_create``: on PostgreSQL, Django 5.2 sends a bulk insert as
``INSERT ... SELECT * FROM UNNEST(%s::type[], ...)`` through psycopg's
client-side binding, so every value of every column is quoted in Python, with
a regular expression per array element; for a batch of 50 attempts that was a
sixth of the worker's time. ``COPY ... FROM STDIN`` streams rows that
psycopg's C extension formats, in the same transaction.

The contract is ``bulk_create``'s, minus the primary keys: no signals, no
``save()``, and the instances do not learn their ids, so use it for rows
nothing reads back in the same unit of work. Elsewhere than PostgreSQL (the
embedded SQLite of ``make run``) it is ``bulk_create``.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection, models


def copy_insert(objs: Sequence[models.Model]) -> None:
    """INSERT ``objs`` (instances of one model with an automatic primary key, not saved)."""
    if not objs:
        return
    model = type(objs[0])
    if connection.vendor != "postgresql":
        model._default_manager.bulk_create(objs)
        return
    fields = [f for f in model._meta.local_concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    sql = f"COPY {quote(model._meta.db_table)} ({columns}) FROM STDIN"
    # The copy is psycopg's own API: wrap its errors as Django wraps execute()'s
    # (an IntegrityError, a DatabaseError), which is what callers catch.
    with connection.cursor() as cursor, connection.wrap_database_errors, cursor.copy(sql) as copy:
        for obj in objs:
            assert obj.pk is None, "copy_insert writes new rows only"
            copy.write_row([f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields])
