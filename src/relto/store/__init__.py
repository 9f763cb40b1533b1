"""Storage: the interface (base.py), its SQL implementation, and the back-ends' engines."""

from relto.store.base import Store
from relto.store.open import open_store

__all__ = ["Store", "open_store"]
