"""Public identifiers: a type prefix plus a ULID (``msg_01J…``, ``ep_01J…``).

ULIDs sort by creation time, so ids read in order in logs and the admin, and
the prefix tells a support engineer what an id refers to at a glance.
"""

from __future__ import annotations

from ulid import ULID

PREFIXES = ("tnt", "key", "ep", "msg", "dlv", "att", "whsec", "oev")


def new_id(prefix: str) -> str:
    """Return ``"<prefix>_<ulid>"``; ``prefix`` must be one of ``PREFIXES``."""
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    return f"{prefix}_{ULID()}"
