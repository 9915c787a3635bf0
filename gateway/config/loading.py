"""Config text -> `Config`: YAML, then the document models (gateway/config/document.py), then the resolution of
names, variables and files (gateway/config/resolve.py).

Loading never stops at the first problem: every error is collected with the YAML path it belongs to, so
`junction validate` can list them all. An unset `$VAR` is not an error: the provider that needs it is marked
unavailable and requests that reach it get an error naming the variable (never its value)."""

from __future__ import annotations

import copy
import hashlib
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import ValidationError

from gateway.config.document import PlanoConfig
from gateway.config.errors import ConfigError, Loc, translate, yaml_path
from gateway.config.resolve import Positions, resolve
from gateway.config.runtime import Config

# Each round of reading drops at least one bad value; a document has far fewer than this many.
_MAX_ROUNDS = 1000


def load(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file; raises ConfigError listing every problem."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{file}: cannot read ({exc.strerror})"]) from None
    env = dict(_dotenv(file.parent / ".env"))
    env.update(os.environ if environ is None else environ)
    return replace(parse(text, env, source=str(file)), digest=text_digest(text))


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse(text: str, environ: Mapping[str, str], source: str = "<memory>") -> Config:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError([f"{source}: invalid YAML{where}: {getattr(exc, 'problem', exc)}"]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"{source}: the top level must be a mapping"])
    document, positions, problems = read_document(raw)
    if document is None:
        raise ConfigError(problems)
    return resolve(document, positions, environ, source, problems)


def read_document(raw: dict[str, Any]) -> tuple[PlanoConfig | None, Positions, list[str]]:
    """The document, and every problem it has. A value with a problem is then read as if it were absent (its
    default), as is a list entry or mapping that cannot do without it, so that the rest is still checked and
    resolved: one run names every problem. None when the document cannot be read even so."""
    data = copy.deepcopy(raw)
    # Where each entry of a top-level list was in the file, as entries are dropped.
    positions: Positions = {key: list(range(len(value))) for key, value in data.items() if isinstance(value, list)}
    problems: list[str] = []
    named: list[Loc] = []
    for _ in range(_MAX_ROUNDS):
        try:
            return PlanoConfig.model_validate(data), positions, problems
        except ValidationError as exc:
            found = translate(exc, PlanoConfig)
        for loc, message in found:
            where = _in_file(loc, positions)
            # A problem at a place already named, or above one (the list whose entry was dropped), is old news.
            if not any(where == seen[: len(where)] for seen in named):
                problems.append(f"{yaml_path(where)}: {message}")
                named.append(where)
        if not _drop(data, positions, [loc for loc, _ in found]):
            break
    return None, positions, problems


def _in_file(loc: Loc, positions: Positions) -> Loc:
    if len(loc) > 1 and isinstance(loc[1], int) and str(loc[0]) in positions:
        return (loc[0], positions[str(loc[0])][loc[1]], *loc[2:])
    return loc


def _drop(data: dict[str, Any], positions: Positions, locs: list[Loc]) -> bool:
    """Remove what each location names: the value, or the entry missing it. An entry of a nested list takes
    its whole list along, so that the positions of the others stay those in the file."""
    doomed: dict[int, tuple[Any, set[Any]]] = {}
    for loc in locs:
        trail: list[tuple[Any, Any]] = []
        node: Any = data
        for part in loc:
            if isinstance(node, dict) and part in node or \
                    isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):  # fmt: skip
                trail.append((node, part))
                node = node[part]
            else:
                break
        if isinstance(trail[-1][0] if trail else None, list) and len(trail) > 2:
            trail.pop()  # a nested list: drop the list itself
        if trail:
            container, key = trail[-1]
            doomed.setdefault(id(container), (container, set()))[1].add(key)
    for container, keys in doomed.values():
        for key in sorted(keys, reverse=True):
            del container[key]
            if container is not data and isinstance(container, list):
                top = next((k for k, v in data.items() if v is container), None)
                if top is not None:
                    del positions[top][key]
    return bool(doomed)


def _dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a `.env` beside the config (the process environment wins)."""
    values: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return values
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        values[key.strip()] = value.strip().strip("'\"")
    return values
