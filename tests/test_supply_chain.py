"""Supply chain: the hash-pinned lock, the known-bad release list, the bench extra's LiteLLM pin, the venv itself.

requirements/dev.lock is what `make install` feeds to `pip install --require-hashes`; requirements/known-bad.txt lists
releases that were malicious when published. These tests fail when the lock is malformed, out of step with
pyproject.toml, pins or admits a known-bad release, or when the running venv holds something else than the lock says.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "dev.lock"
KNOWN_BAD = ROOT / "requirements" / "known-bad.txt"
PYPROJECT = ROOT / "pyproject.toml"

HASH_RE = re.compile(r"--hash=sha256:([0-9a-f]{64})")
PIN_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;=*]+)$")
# The CUDA side of PyTorch: none of it may come in with the CPU build.
CUDA_PACKAGES = re.compile(r"^(nvidia-.*|cuda-.*|triton)$")


@dataclass
class Locked:
    name: str  # canonical (PEP 503)
    version: str
    line: int
    hashes: list[str] = field(default_factory=list, repr=False)
    problems: list[str] = field(default_factory=list)


def logical_lines(path: Path) -> list[tuple[int, str]]:
    """(first line number, text) of each logical line: continuations joined, comments and blanks dropped."""
    out: list[tuple[int, str]] = []
    buf, start = "", 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        text = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not buf:
            start = number
        if text.endswith("\\"):
            buf += text[:-1] + " "
            continue
        buf += text
        if buf.strip():
            out.append((start, " ".join(buf.split())))
        buf = ""
    if buf.strip():
        out.append((start, " ".join(buf.split())))
    return out


def parse_lock(path: Path = LOCK) -> list[Locked]:
    entries: list[Locked] = []
    for number, text in logical_lines(path):
        words = text.split()
        requirement, options = words[0], words[1:]
        match = PIN_RE.match(requirement)
        name = canonicalize_name(match.group(1)) if match else requirement
        entry = Locked(name, match.group(2) if match else "", number)
        if requirement.startswith("-"):
            entry.problems.append(
                f"option line {text!r} (index, find-links, trusted-host and -e lines are not allowed)"
            )
        elif not match:
            entry.problems.append(f"{requirement!r} is not pinned exactly with == (no ranges, wildcards or URLs)")
        for option in options:
            hashed = HASH_RE.fullmatch(option)
            if hashed:
                entry.hashes.append(hashed.group(1))
            else:
                entry.problems.append(f"unexpected {option!r} (only --hash=sha256:<64 hex digits> may follow a pin)")
        if not entry.hashes:
            entry.problems.append("no --hash=sha256: line")
        entries.append(entry)
    return entries


@dataclass(frozen=True)
class Bad:
    name: str
    version: Version
    reason: str
    line: int


def parse_known_bad(path: Path = KNOWN_BAD) -> list[Bad]:
    bad: list[Bad] = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        spec, _, reason = line.partition("#")
        match = PIN_RE.match(spec.strip())
        assert match, f"{path.name}:{number}: expected `name==version  # reason`, got {raw!r}"
        assert reason.strip(), f"{path.name}:{number}: {spec.strip()} has no reason (`# why, with the advisory`)"
        bad.append(Bad(canonicalize_name(match.group(1)), Version(match.group(2)), reason.strip(), number))
    return bad


def bad_hit(bad: list[Bad], name: str, version: str) -> Bad | None:
    """The known-bad entry for this release, if any (normalised name and version)."""
    try:
        parsed = Version(version)
    except InvalidVersion:
        return None
    name = canonicalize_name(name)
    return next((b for b in bad if b.name == name and b.version == parsed), None)


def pyproject_requirements() -> dict[str, list[str]]:
    """`dependencies` and every optional-dependencies group of pyproject.toml."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    groups = {"dependencies": list(project.get("dependencies", []))}
    for extra, reqs in project.get("optional-dependencies", {}).items():
        groups[f"optional-dependencies.{extra}"] = list(reqs)
    return groups


@pytest.fixture(scope="module")
def lock() -> list[Locked]:
    return parse_lock()


@pytest.fixture(scope="module")
def known_bad() -> list[Bad]:
    return parse_known_bad()


# ------------------------------------------------------------------------------------------------------------------
# the parsers, on small inputs
# ------------------------------------------------------------------------------------------------------------------


def test_lock_parser_flags_what_it_must(tmp_path: Path) -> None:
    sample = tmp_path / "sample.lock"
    sample.write_text(
        "# header\n"
        "good==1.0 \\\n    --hash=sha256:" + "a" * 64 + " \\\n    --hash=sha256:" + "b" * 64 + "\n    # via x\n"
        "nohash==2.0\n"
        "ranged>=1.0 \\\n    --hash=sha256:" + "c" * 64 + "\n"
        "md5==1.0 \\\n    --hash=md5:" + "d" * 32 + "\n"
        "--trusted-host example.invalid\n"
    )
    by_name = {e.name: e for e in parse_lock(sample)}
    assert by_name["good"].version == "1.0" and len(by_name["good"].hashes) == 2 and not by_name["good"].problems
    assert by_name["nohash"].problems == ["no --hash=sha256: line"]
    assert any("not pinned exactly" in p for p in by_name["ranged>=1.0"].problems)
    assert any("unexpected '--hash=md5:" in p for p in by_name["md5"].problems)
    assert any("option line" in p for p in by_name["--trusted-host"].problems)


def test_known_bad_matching_normalises_names_and_versions(tmp_path: Path) -> None:
    sample = tmp_path / "bad.txt"
    sample.write_text("# comment\nSome_Pkg==0.1.2.post1  # why\n")
    bad = parse_known_bad(sample)
    assert bad_hit(bad, "some-pkg", "0.1.2-1") is not None  # PEP 440: 0.1.2-1 is 0.1.2.post1
    assert bad_hit(bad, "some.pkg", "0.1.2.post1") is not None
    assert bad_hit(bad, "some-pkg", "0.1.2") is None
    sample.write_text("nopkg==1.0\n")
    with pytest.raises(AssertionError, match="has no reason"):
        parse_known_bad(sample)


# ------------------------------------------------------------------------------------------------------------------
# the repository's files
# ------------------------------------------------------------------------------------------------------------------


def test_known_bad_list_is_well_formed_and_has_the_litellm_releases(known_bad: list[Bad]) -> None:
    pairs = {(b.name, str(b.version)) for b in known_bad}
    assert {("litellm", "1.82.7"), ("litellm", "1.82.8")} <= pairs
    assert len(pairs) == len(known_bad), "duplicate entries in requirements/known-bad.txt"


def test_every_lock_line_is_an_exact_pin_with_a_sha256_hash(lock: list[Locked]) -> None:
    assert len(lock) > 50, f"{LOCK.name} parsed to only {len(lock)} requirements"
    problems = [f"{LOCK.name}:{e.line}: {e.name}: {p}" for e in lock for p in e.problems]
    assert not problems, "\n".join(problems)
    names = [e.name for e in lock]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"pinned more than once in {LOCK.name}: {duplicates}"


def test_lock_pins_no_known_bad_release(lock: list[Locked], known_bad: list[Bad]) -> None:
    hits = [(e, bad_hit(known_bad, e.name, e.version)) for e in lock]
    found = [f"{LOCK.name}:{e.line}: {e.name}=={e.version} is on the known-bad list ({b.reason})" for e, b in hits if b]
    assert not found, "\n".join(found)


def test_lock_has_the_cpu_torch_and_nothing_of_cuda(lock: list[Locked]) -> None:
    torch = next((e for e in lock if e.name == "torch"), None)
    assert torch is not None, f"torch is not in {LOCK.name}"
    assert Version(torch.version).local == "cpu", f"torch=={torch.version}: the lock must pin the CPU build (+cpu)"
    cuda = [f"{e.name}=={e.version}" for e in lock if CUDA_PACKAGES.match(e.name)]
    assert not cuda, f"CUDA packages in {LOCK.name} (the CPU torch needs none): {cuda}"


def test_lock_covers_pyproject_runtime_and_dev(lock: list[Locked]) -> None:
    """Every runtime and dev requirement of pyproject.toml is pinned in the lock at a version it accepts: a new or
    changed dependency without `make lock` fails here, not later as an import error or a silent drift."""
    pinned = {e.name: e.version for e in lock}
    env = default_environment()
    groups = pyproject_requirements()
    missing = []
    for group in ("dependencies", "optional-dependencies.dev"):
        for text in groups.get(group, []):
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({**env, "extra": "dev"}):
                continue
            name = canonicalize_name(req.name)
            if name not in pinned:
                missing.append(f"{text!r} ({group}) is not in {LOCK.name}")
            elif not req.specifier.contains(pinned[name], prereleases=True):
                missing.append(f"{text!r} ({group}) does not accept the locked {name}=={pinned[name]}")
    assert not missing, "\n".join(missing) + "\nrun `make lock` to re-resolve requirements/dev.lock"


def test_pyproject_admits_no_known_bad_release(known_bad: list[Bad]) -> None:
    """No requirement in pyproject.toml (runtime, dev or any extra) accepts a known-bad release of its package."""
    admitted = []
    for group, reqs in pyproject_requirements().items():
        for text in reqs:
            try:
                req = Requirement(text)
            except InvalidRequirement as exc:  # pragma: no cover - pyproject would not install either
                pytest.fail(f"pyproject.toml {group}: {text!r}: {exc}")
            for b in known_bad:
                if b.name == canonicalize_name(req.name) and req.specifier.contains(b.version, prereleases=True):
                    admitted.append(f"{group}: {text!r} admits {b.name}=={b.version} ({b.reason})")
    assert not admitted, "\n".join(admitted)


def test_bench_extra_pins_litellm_exactly_to_a_good_release(known_bad: list[Bad]) -> None:
    bench = pyproject_requirements().get("optional-dependencies.bench")
    assert bench is not None, "pyproject.toml has no `bench` extra"
    litellm = [Requirement(r) for r in bench if canonicalize_name(Requirement(r).name) == "litellm"]
    assert len(litellm) == 1, f"the bench extra must name litellm once, found {[str(r) for r in litellm]}"
    specs = list(litellm[0].specifier)
    assert len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version, (
        f"the bench extra must pin litellm with a single exact ==, got {str(litellm[0])!r}"
    )
    hit = bad_hit(known_bad, "litellm", specs[0].version)
    assert hit is None, f"bench pins litellm=={specs[0].version}, a known-bad release ({hit.reason if hit else ''})"


# ------------------------------------------------------------------------------------------------------------------
# the running venv
# ------------------------------------------------------------------------------------------------------------------


def installed() -> dict[str, str]:
    versions: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            versions.setdefault(canonicalize_name(name), dist.version)
    return versions


def test_no_known_bad_release_is_installed(known_bad: list[Bad]) -> None:
    found = []
    for name, version in sorted(installed().items()):
        hit = bad_hit(known_bad, name, version)
        if hit:
            found.append(f"{name}=={version} ({hit.reason})")
    assert not found, f"known-bad releases installed in {sys.prefix}:\n" + "\n".join(found)


def test_installed_versions_match_the_lock(lock: list[Locked]) -> None:
    have = installed()
    mismatches = []
    for e in lock:
        if e.problems:  # reported by test_every_lock_line_is_an_exact_pin_with_a_sha256_hash
            continue
        version = have.get(e.name)
        if version is None:
            mismatches.append(f"{e.name}: locked {e.version}, not installed")
        elif Version(version) != Version(e.version):
            mismatches.append(f"{e.name}: locked {e.version}, installed {version}")
    assert not mismatches, (
        f"the venv at {sys.prefix} does not match {LOCK.name} ({len(mismatches)} packages):\n  "
        + "\n  ".join(mismatches)
        + "\nreinstall with `make install` (it reinstalls when the lock is newer than .venv/.installed)"
    )
