"""Fixtures shared by the integration tests."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.procs import start_mock_upstream


@pytest.fixture(scope="module")
def mock() -> Iterator[str]:
    """A mock upstream process for the module: its base URL."""
    with start_mock_upstream() as (_, base_url):
        yield base_url
