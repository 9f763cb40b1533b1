"""What went through `Node.record`, counted in memory for the metrics: records and items per decision path."""

from __future__ import annotations

import threading
from collections import Counter


class Tally:
    """Records and items per decision path since the process started (thread-safe, no I/O)."""

    def __init__(self) -> None:
        self._records: Counter[str] = Counter()
        self._items: Counter[str] = Counter()
        self._lock = threading.Lock()  # `counter[k] += n` is a read and a write: threads would lose counts

    def __repr__(self) -> str:
        return f"Tally(records={sum(self._records.values())}, items={sum(self._items.values())})"

    def count(self, path: str, items: int) -> None:
        """Note one record of `items` items on decision path `path`."""
        with self._lock:
            self._records[path] += 1
            self._items[path] += items

    def records(self) -> dict[str, int]:
        """Records per decision path, as of now."""
        with self._lock:
            return dict(self._records)

    def items(self) -> dict[str, int]:
        """Items per decision path, as of now."""
        with self._lock:
            return dict(self._items)
