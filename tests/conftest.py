"""Fixtures shared by the integration tests, and the end-of-run secret scan."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

import httpx
import pytest

from tests.procs import RunRecord, start_mock_upstream

PREFIX = 8  # no secret, and no prefix of 8 characters of one, may appear anywhere


@pytest.fixture(scope="module")
def mock() -> Iterator[str]:
    """A mock upstream process for the module: its base URL."""
    with start_mock_upstream() as (_, base_url):
        yield base_url


@pytest.fixture()
def upstream(mock: str) -> Callable[[], list[dict[str, Any]]]:
    """The bodies of the requests the module's mock received during the test (its script queue is
    cleared first): call it to read them."""
    httpx.delete(f"{mock}/_mock/requests")
    httpx.delete(f"{mock}/_mock/script")
    return lambda: [r["body"] for r in httpx.get(f"{mock}/_mock/requests").json() if r.get("body")]


_captured: list[tuple[str, str]] = []  # (test id, captured stdout/stderr/log and failure text)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    text = "".join(content for _, content in report.sections)
    if report.failed:
        text += report.longreprtext
    if text:
        _captured.append((report.nodeid, text))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Grep everything the run produced (every gateway and mock process's output, every test's
    captured output) for every secret any gateway config held; any hit fails the run."""
    sources = RunRecord.outputs + _captured
    hits = find_leaks(RunRecord.secrets, sources)
    size = sum(len(text) for _, text in sources)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("-", "secret scan")
    line = reporter.write_line if reporter is not None else print
    line(f"{len(RunRecord.secrets)} configured secrets, {len(sources)} process and test outputs "
         f"({size:,} characters): {len(hits)} leaks")  # fmt: skip
    for where, prefix in hits:
        line(f"LEAK of a secret starting {prefix[:3]}... in {where}")
    if hits:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def find_leaks(secrets: Iterable[str], sources: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(where, secret prefix) for every source whose text holds a secret's first PREFIX characters."""
    prefixes = {s[:PREFIX] for s in secrets if len(s) >= PREFIX}
    return sorted({(where, p) for where, text in sources for p in prefixes if p in text})


@pytest.fixture(scope="session")
def redis_service() -> Iterator[Any]:
    """A real redis-server for the session (skipped, with the reason, when the binary is missing)."""
    from tests.redis_server import redis_server

    with redis_server() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_service() -> Iterator[Any]:
    """A real PostgreSQL for the session (skipped, with the reason, when the binaries are missing)."""
    from tests.postgres_server import postgres_server

    with postgres_server() as server:
        yield server
