"""The end-of-run secret scan (tests/conftest.py) finds what it must, and notes configs' secrets."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import find_leaks
from tests.procs import RunRecord, write_config


def test_a_secret_or_its_prefix_anywhere_is_a_leak() -> None:
    secret = "sk-live-0123456789abcdef"
    sources = [("gateway", "INFO all fine"), ("masked", "key sk-live-0***cdef (8 characters are too many)"), ("prefix", "Incorrect key sk-live-01***"),
               ("whole", f"header: Bearer {secret}")]  # fmt: skip
    assert find_leaks([secret, "short"], sources) == [("masked", "sk-live-"), ("prefix", "sk-live-"), ("whole", "sk-live-")]
    assert find_leaks([], sources) == []


def test_secrets_of_a_served_config_are_noted(tmp_path: Path) -> None:
    config = write_config(tmp_path, """
        version: v0.4.0
        llm_providers:
          - model: openai/gpt-4o
            access_key: $SCAN_PROVIDER_KEY
        gateway_keys:
          - {name: team, key: sk-gw-team-key-0123456789}
    """)
    RunRecord.note_config(["junction", "serve", "--config", str(config)], {"SCAN_PROVIDER_KEY": "sk-prov-abcdefghijkl"})
    assert {"sk-prov-abcdefghijkl", "sk-gw-team-key-0123456789"} <= RunRecord.secrets
