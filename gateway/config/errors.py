"""Config problems: `ConfigError`, and the one translation of pydantic's validation errors into path-named
messages (`routing_preferences[1].models: required: a non-empty list of models`)."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, Iterable, Union

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from gateway.config.fields import Expect

Loc = tuple[str | int, ...]

# What a value of the wrong type was expected to be, by pydantic error type: `expected a list, got str`.
_EXPECTED = {
    "bool_type": "true or false", "dict_type": "a mapping", "model_type": "a mapping",
    "model_attributes_type": "a mapping", "list_type": "a list", "string_type": "a string",
    "int_type": "a whole number", "float_type": "a number",
}  # fmt: skip


class ConfigError(Exception):
    """One or more problems, each naming the YAML path it concerns."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def yaml_path(loc: Iterable[str | int]) -> str:
    """`('routing_preferences', 1, 'models', 0)` -> `routing_preferences[1].models[0]`."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def translate(error: ValidationError, root: type[BaseModel]) -> list[tuple[Loc, str]]:
    """Each error of validating a `root` document: where (the YAML location) and what, in the loader's words."""
    found = []
    for detail in error.errors():
        loc = tuple(part for part in detail["loc"] if part != "[key]")  # a bad mapping key is named by itself
        found.append(_explain(detail, loc, root))
    return found


def _explain(detail: ErrorDetails, loc: Loc, root: type[BaseModel]) -> tuple[Loc, str]:
    kind, value, ctx = detail["type"], detail["input"], detail.get("ctx") or {}
    if kind == "config":  # worded where it was raised (fields.invalid)
        return loc + tuple(ctx["at"]), ctx["message"]
    if kind == "extra_forbidden":
        section = _model_at(root, loc[:-1])
        if section is not None and getattr(section, "unknown_key", None):
            return loc, str(section.unknown_key)
        known = list(section.model_fields) if section is not None else []
        hint = difflib.get_close_matches(str(loc[-1]), known, n=1)
        return loc, "unknown key" + (f" (did you mean '{hint[0]}'?)" if hint else "")
    if kind == "missing":
        section = _model_at(root, loc[:-1])
        expect = _expectation(section.model_fields.get(str(loc[-1])) if section is not None else None)
        return loc, (expect.when_missing() if expect else None) or "required"
    if kind == "literal_error":  # ctx: "'a', 'b' or 'c'"
        return loc, f"expected {ctx['expected'].replace(chr(39), '')}, got {value!r}"
    if kind in _EXPECTED:
        return loc, f"expected {_EXPECTED[kind]}, got {type(value).__name__}"
    return loc, f"{detail['msg'][0].lower()}{detail['msg'][1:]}, got {value!r}"


def _model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The section model at a YAML location, following fields, list items and mapping values."""
    kind: Any = root
    for part in loc:
        kind = _unwrap(kind)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            field = kind.model_fields.get(str(part))
            if field is None:
                return None
            kind = field.annotation
        elif typing.get_origin(kind) in (list, dict):
            kind = typing.get_args(kind)[-1]
        else:
            return None
    kind = _unwrap(kind)
    return kind if isinstance(kind, type) and issubclass(kind, BaseModel) else None


def _unwrap(kind: Any) -> Any:
    """`Annotated[X, ...]` and `X | None` -> X."""
    while True:
        if typing.get_origin(kind) is typing.Annotated:
            kind = typing.get_args(kind)[0]
        elif typing.get_origin(kind) in (Union, types.UnionType):
            members = [m for m in typing.get_args(kind) if m is not type(None)]
            if len(members) != 1:
                return kind
            kind = members[0]
        else:
            return kind


def _expectation(field: Any) -> Expect | None:
    if field is None:
        return None
    return next((m for m in field.metadata if isinstance(m, Expect)), None)
