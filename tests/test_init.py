"""`junction init`: a starter config for any mix of providers is valid, commented, and never overwrites."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import parse
from gateway.starter import PRESETS, starter_config
from tests.procs import ROOT


def init(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "init", *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)  # fmt: skip


@pytest.mark.parametrize("names", [[n] for n in PRESETS] + [list(p) for p in itertools.combinations(PRESETS, 2)])
def test_every_preset_and_pair_is_a_valid_config(names: list[str]) -> None:
    config = parse(starter_config(names), {}, source="starter.yaml")
    assert config.default is not None and config.default.model == PRESETS[names[0]].models[0]
    assert "arch.claude.code.small.fast" in config.aliases
    assert len(config.preferences) == (3 if len(config.providers) > 1 else 0)
    assert {p.model for p in config.providers} == {m for n in names for m in PRESETS[n].models}


def test_init_writes_a_commented_config_and_never_overwrites(tmp_path: Path) -> None:
    out = tmp_path / "plano_config.yaml"
    done = init("kimi", "deepseek", "--out", str(out))
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "export MOONSHOTAI_API_KEY=..." in text and "access_key: $DEEPSEEK_API_KEY" in text
    assert "routing_preferences:" in text and "# gateway_keys:" in text
    checked = subprocess.run([sys.executable, "-m", "gateway.cli", "validate", "--config", str(out)],
                             capture_output=True, text=True, timeout=60, cwd=ROOT)  # fmt: skip
    assert checked.returncode == 0 and "3 routing preferences" in checked.stdout
    again = init("openai", "--out", str(out))
    assert again.returncode == 1 and "not overwritten" in again.stderr and out.read_text() == text
    unknown = init("nonesuch", "--out", str(tmp_path / "other.yaml"))
    assert unknown.returncode == 2 and "known: kimi" in unknown.stderr and not (tmp_path / "other.yaml").exists()
