"""Field types shared by the config document's sections: durations, model references, and `Expect`, which
gives a field the exact wording of its error ("expected a port number 0-65535, got 70000")."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Callable

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    GetCoreSchemaHandler,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError, core_schema

# Error types that mean "a value of the right type, out of range" (`Expect.bound` words those).
_RANGE_ERRORS = frozenset({
    "greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number",
    "too_short", "too_long", "string_too_short", "string_too_long", "string_pattern_mismatch", "literal_error",
})  # fmt: skip


def invalid(message: str, at: tuple[str | int, ...] = ()) -> PydanticCustomError:
    """A config problem with its final wording; `at` extends the path below the value being validated
    (a model validator naming one of its fields)."""
    return PydanticCustomError("config", "{message}", {"message": message, "at": at})


@dataclass(frozen=True)
class Expect:
    """`Annotated` metadata: the message for a value this field does not take, as today's users read it.

    The template may use `{value!r}` (what was written) and `{kind}` (its YAML type: str, int, list...).
    `bound` words a value of the right type but out of range, when that reads differently; `missing` words an
    absent required field (default: the template, with `value` None). Only problems with the value itself are
    reworded: one inside a mapping or list keeps its own path and wording, unless `whole`, and one raised with
    `invalid` keeps its wording."""

    template: str | None = None
    bound: str | None = None
    missing: str | None = None
    whole: bool = False

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        schema = handler(source)
        if self.template is None:
            return schema
        return core_schema.no_info_wrap_validator_function(self._check, schema)

    def _check(self, value: Any, handler: Callable[[Any], Any]) -> Any:
        try:
            return handler(value)
        except ValidationError as exc:
            errors = exc.errors()
            # Keep problems below the value, and those already worded (a section's own checks).
            if any(e["type"] == "config" for e in errors) or not self.whole and any(e["loc"] for e in errors):
                raise
            in_range = self.bound is not None and all(e["type"] in _RANGE_ERRORS for e in errors)
            raise invalid(self.text(self.bound if in_range else self.template, value)) from None

    def when_missing(self) -> str | None:
        template = self.missing or self.template
        return self.text(template, None) if template else None

    @staticmethod
    def text(template: str | None, value: Any) -> str:
        return (template or "").format(value=value, kind=type(value).__name__)


def _text(value: Any) -> Any:
    """YAML reads `version: 0.2` or `key: 12345` as numbers; the loader has always taken them as text."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return str(value) if is_number else value


# A string that may also be written as a bare number.
Text = Annotated[str, BeforeValidator(_text, json_schema_input_type=str | int | float)]

ModelRef = Annotated[str, Expect("expected a model name, got {value!r}")]

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*")
_SCALE = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def seconds(value: Any) -> float:
    """`300s`, `5m`, `1500ms`, `24h`, `30d` or a number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    match = _DURATION.fullmatch(str(value))
    if not match:
        raise invalid(f"expected a duration like 300s, got {value!r}")
    return float(match.group(1)) * _SCALE[match.group(2)]


def _positive(value: float) -> float:
    if value <= 0:
        raise invalid("expected a positive duration")
    return value


DurationText = Annotated[str, Field(pattern=r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$")]
# Seconds, written as a number or with a unit (ms, s, m, h, d).
Duration = Annotated[float, BeforeValidator(seconds, json_schema_input_type=float | DurationText)]
PositiveDuration = Annotated[Duration, AfterValidator(_positive)]


def needs(field: str, when: tuple[str, str], message: str) -> Any:
    """A section check (assign it in the class): `field` must be given when key `when[0]` is `when[1]`."""
    key, value = when

    def check(section: BaseModel) -> BaseModel:
        if getattr(section, key) == value and not getattr(section, field):
            raise invalid(message, at=(field,))
        return section

    return model_validator(mode="after")(check)


def whole_number(at_least: int, wording: str) -> Any:
    """An integer >= `at_least` (never `true`), with the message `expected <wording>, got <value>`."""
    return Annotated[int, Field(ge=at_least), Expect(f"expected {wording}, got {{value!r}}")]
