"""The reference sender: what a plain asyncio sender gets out of a receiver that waits.

``python -m bench.reference`` reads a JSON spec on stdin (``Spec``'s fields), sends
``count`` POSTs with aiohttp over ``concurrency`` keep-alive connections to the URLs
in turn, each with the body and signature headers Hookpost would send for the same
message, and prints one JSON line: when sending began and ended (epoch seconds), its
own CPU seconds meanwhile, and how many answers were not 2xx. It runs in a process
of its own so that its CPU is its own and the harness's GIL is not in its way.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from webhooks import signing


@dataclass(frozen=True)
class Spec:
    """One run of the reference sender."""

    urls: list[str]
    count: int
    concurrency: int
    prefix: str  # request i carries webhook-id ``{prefix}-{i}`` and goes to urls[i mod len]
    event_type: str
    payload: dict[str, Any]
    secret: str


def request(spec: Spec, index: int, timestamp: int) -> tuple[str, bytes, dict[str, str]]:
    """URL, body and headers of request ``index``: Hookpost's envelope and signature, byte for byte
    the size of what Hookpost sends for a message of the same payload."""
    msg_id = f"{spec.prefix}-{index}"
    body = json.dumps(
        {
            "type": spec.event_type,
            "timestamp": datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="microseconds")[:-6] + "Z",
            "data": {**spec.payload, "i": index, "tag": spec.prefix},
        },
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signing.signature_header([spec.secret], msg_id, timestamp, body),
    }
    return spec.urls[index % len(spec.urls)], body, headers


async def send_all(spec: Spec) -> dict[str, float]:
    """Send the run; ``concurrency`` tasks each take the next index until none is left."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=spec.concurrency, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=60)
    failed = 0
    indexes = iter(range(spec.count))

    async def sender(session: aiohttp.ClientSession) -> None:
        nonlocal failed
        for index in indexes:  # one shared iterator: each index is taken once
            url, body, headers = request(spec, index, int(time.time()))
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                failed += not 200 <= response.status < 300

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        cpu_began, began = time.process_time(), time.time()
        await asyncio.gather(*(sender(session) for _ in range(spec.concurrency)))
        ended, cpu_ended = time.time(), time.process_time()
    return {"start": began, "end": ended, "cpu_s": cpu_ended - cpu_began, "failed": failed}


def main() -> None:
    spec = Spec(**json.loads(sys.stdin.read()))
    print(json.dumps(asyncio.run(send_all(spec))), flush=True)


if __name__ == "__main__":
    main()
