"""PostgreSQL LISTEN as a doorbell between server processes: a committed write in any process wakes the feeds
of every process. Only a doorbell: feeds read the events themselves, so a lost notification delays, never loses.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger("relto.stream")


async def listen(url: str, channel: str, ring: Callable[[str | None], None]) -> None:
    """Ring `ring(collection_id)` for each notification on `channel`; reconnect forever on failure."""
    import psycopg

    backoff = 0.5
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                await conn.execute(f'LISTEN "{channel}"')
                backoff = 0.5
                ring(None)  # anything committed while we were not listening
                async for notice in conn.notifies():
                    ring(notice.payload or None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database restarted or the network blinked: poll until we are back
            log.warning("live stream doorbell lost (%s); reconnecting in %.1f s", exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
