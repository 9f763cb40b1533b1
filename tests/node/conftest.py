"""A node on a fresh SQLite folder, for the parts' tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from relto.node import Node
from tests.conftest import make_node


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    made = make_node(tmp_path)
    yield made
    made.close()
