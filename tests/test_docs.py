"""The documentation site builds in strict mode, and the README stays a front page."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MKDOCS = [sys.executable, "-m", "mkdocs"]


def build(root: Path, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([*MKDOCS, "build", "--strict", "-f", str(root / "mkdocs.yml"), "-d", str(out)],
                          capture_output=True, text=True, timeout=180, env=env, cwd=root)  # fmt: skip


def test_the_site_builds_in_strict_mode(tmp_path: Path) -> None:
    result = build(ROOT, tmp_path / "site")
    assert result.returncode == 0, result.stderr[-3000:]
    pages = {p.relative_to(tmp_path / "site").as_posix() for p in (tmp_path / "site").rglob("index.html")}
    for page in ("index.html", "getting-started/index.html", "configuration-reference/index.html",
                 "routing/index.html", "architecture/index.html"):  # fmt: skip
        assert page in pages


@pytest.mark.parametrize(
    ("page", "breakage", "complaint"),
    [("routing.md", "\nSee [the missing page](no-such-page.md).\n", "'no-such-page.md', but the target is not found"),
     ("routing.md", "\nSee [a missing section](reliability.md#no-such-section).\n", "no-such-section"),
     ("getting-started.md", "\nSee [above](#not-here).\n", "there is no such anchor on this page")],
)
def test_a_broken_link_fails_the_build(tmp_path: Path, page: str, breakage: str, complaint: str) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "docs", copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    shutil.copy(ROOT / "README.md", copy / "README.md")
    with (copy / "docs" / page).open("a") as f:
        f.write(breakage)
    result = build(copy, tmp_path / "site")
    assert result.returncode != 0 and complaint in result.stderr


def test_the_readme_is_a_front_page() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    for must in ("make run", "make test", "junction claude", "junction codex", "yaml-language-server: $schema=",
                 "## Dependencies"):  # fmt: skip
        assert must in text
    for link in ("docs/getting-started.md", "docs/configuration-reference.md", "docs/routing.md"):
        assert link in text
    # every relative link of the front page leads to a file of the repository
    targets = {t.split("#")[0] for t in re.findall(r"\]\(([^)#\s][^)\s]*)\)", text) if "://" not in t}
    assert targets and not [t for t in targets if not (ROOT / t).exists()]
