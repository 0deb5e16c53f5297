"""Typed readers for settings that come from the environment.

Strict on purpose: a typo such as ``DEBUG=ture`` must stop the process with a
clear message instead of silently meaning False.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from django.core.exceptions import ImproperlyConfigured
from dotenv import dotenv_values


def load_env_file(path: str) -> list[str]:
    """Set the variables of the dotenv file at ``path`` that the environment leaves unset;
    returns their names.

    The environment always wins, ``NAME_FILE`` included: the file's ``NAME`` is skipped
    when the environment holds ``NAME_FILE``, and the other way round. Values are taken
    as written (no ``${...}`` expansion). An empty ``path`` or a missing file is no error.
    """
    if not path or not Path(path).is_file():
        return []
    filled = []
    for name, value in dotenv_values(path, interpolate=False).items():
        counterpart = name.removesuffix("_FILE") if name.endswith("_FILE") else f"{name}_FILE"
        if value is None or name in os.environ or counterpart in os.environ:
            continue
        os.environ[name] = value
        filled.append(name)
    return filled


T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None) -> str | None:
    """Return the variable, or ``default`` when it is unset.

    ``NAME_FILE`` pointing at a file is read instead when present, so secrets
    can come from mounted files (Docker/Kubernetes secrets).
    """
    path = os.environ.get(f"{name}_FILE")
    if path:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, got {raw!r}")


def _parsed(name: str, default: T, parse: Callable[[str], T], what: str) -> T:
    """The variable read by ``parse``; blank or unset means ``default``. A value ``parse``
    rejects (ValueError) stops the process with a message naming the variable."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return parse(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be {what}, got {raw!r}") from exc


def env_int(name: str, default: int) -> int:
    return _parsed(name, default, int, "an integer")


def env_float(name: str, default: float) -> float:
    """A finite number; blank or unset means ``default``."""
    value = _parsed(name, default, float, "a number")
    if not math.isfinite(value):
        raise ImproperlyConfigured(f"{name} must be a finite number, got {os.environ[name]!r}")
    return value


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    """Comma-separated list; blank items are dropped."""
    raw = os.environ.get(name)
    if raw is None:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_int_list(name: str, default: list[int]) -> list[int]:
    """Comma-separated integers; blank items are dropped, and blank or unset means ``default``."""

    def integers(raw: str) -> list[int]:
        return [int(item) for item in raw.split(",") if item.strip()]

    return _parsed(name, list(default), integers, "comma-separated integers")
