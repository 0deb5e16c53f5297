#!/usr/bin/env python
"""Django's command-line utility for Hookpost."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    _read_dotenv()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


def _read_dotenv() -> None:
    """Commands run by hand see what `make run`'s processes see: the .env it writes fills
    in what the environment leaves unset, and says so. Servers and workers never read it.

    ``HOOKPOST_DOTENV`` names another file, or none when empty (the test suite's choice).
    """
    from config.env import load_env_file

    path = os.environ.get("HOOKPOST_DOTENV", str(Path(__file__).resolve().parent / ".env"))
    filled = load_env_file(path)
    if filled:
        print(f"settings from {path}: {', '.join(filled)}", file=sys.stderr)


if __name__ == "__main__":
    main()
