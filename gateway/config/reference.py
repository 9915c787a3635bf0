"""The configuration reference page, generated from the config's JSON Schema: every key with its type,
default and description, section by section (docs/configuration-reference.md; `make schema` writes it,
and tests/test_config_schema.py fails while the committed page differs). Pure functions."""

from __future__ import annotations

import json
from typing import Any

HEADER = """# Configuration reference

Every key of `plano_config.yaml`, generated from the config schema (`junction schema`, committed as
`schema/plano_config.schema.json`; `make schema` regenerates both). Durations are written `300s`, `5m`, `1h`, `2d`
or as seconds; any string value may be a `$VAR` or `${VAR}` read from the environment or a `.env` beside the
config. [Configuration](configuration.md) explains how the parts fit together.
"""


def _ref(node: dict[str, Any]) -> str | None:
    """The name of the definition a node stands for (directly, as list items, or beside null)."""
    if "$ref" in node:
        return str(node["$ref"]).rsplit("/", 1)[-1]
    for alt in node.get("anyOf", []) + node.get("oneOf", []):
        found = _ref(alt) if alt.get("type") != "array" else _ref(alt.get("items", {}))
        if found:
            return found
    if node.get("type") == "array":
        return _ref(node.get("items", {}))
    return None


def type_of(node: dict[str, Any]) -> str:
    """A short human name for a schema node's type."""
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    if "$ref" in node:
        return "section"
    alts = node.get("anyOf") or node.get("oneOf")
    if alts:
        names = [type_of(a) for a in alts if a.get("type") != "null"]
        return " or ".join(dict.fromkeys(names)) or "null"
    kind = node.get("type")
    if kind == "array":
        return f"list of {type_of(node.get('items', {}))}"
    if kind == "object":
        extra = node.get("additionalProperties")
        return f"map of {type_of(extra)}" if isinstance(extra, dict) and extra else "mapping"
    if isinstance(kind, list):
        return " or ".join(k for k in kind if k != "null")
    return {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean"}.get(str(kind), "any")


def _default(node: dict[str, Any]) -> str:
    if "default" not in node or node["default"] is None:
        return ""
    return f"`{json.dumps(node['default'])}`"


def _text(node: dict[str, Any]) -> str:
    return " ".join(str(node.get("description", "")).split()).replace("|", "\\|")


def _is_list(node: dict[str, Any]) -> bool:
    return node.get("type") == "array" or any(a.get("type") == "array" for a in node.get("anyOf", []))


def _table(path: str, definition: dict[str, Any], defs: dict[str, Any], out: list[str], seen: tuple[str, ...],
           level: int) -> None:  # fmt: skip
    """A row per key of `definition`, then a heading and a table for each section inside it."""
    out += ["| key | type | default | meaning |", "|---|---|---|---|"]
    nested: list[tuple[str, dict[str, Any], str]] = []
    for key, node in definition.get("properties", {}).items():
        name = f"{path}.{key}" if path else key
        out.append(f"| `{name}` | {type_of(node)} | {_default(node)} | {_text(node)} |")
        sub = _ref(node)
        if sub and sub not in seen:
            nested.append((name + ("[]" if _is_list(node) else ""), node, sub))
    out.append("")
    for name, node, sub in nested:
        # a top-level section is introduced by its key's description, a nested one by its section's own
        out += [f"{'#' * level} `{name}`", "", _text(node if level == 2 else defs[sub]), ""]
        _table(name, defs[sub], defs, out, seen + (sub,), 3)


def reference(schema: dict[str, Any]) -> str:
    """The Markdown page for `schema`."""
    out = [HEADER, "## Top level", "", _text(schema), ""]
    _table("", schema, schema.get("$defs", {}), out, (), 2)
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    from gateway.config.document import json_schema

    print(reference(json_schema()), end="")
