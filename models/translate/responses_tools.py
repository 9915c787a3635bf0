"""What the Responses client's tools become upstream, so calls can be turned back on the way out.

A Chat Completions or Messages upstream only knows function tools. A Responses request may also carry
`custom` tools (free-form text input, e.g. Codex's `apply_patch`) and `namespace` tools (a group of
functions under one name). The request translator turns each into a plain function with a name that
is unique and valid upstream, and records it here; the response translators look a call's upstream
name up to rebuild a `custom_tool_call` (input unwrapped from `{"input": ...}`) or a `function_call`
carrying its `namespace` and original `name`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

# Upstream function names: OpenAI and Anthropic accept ^[a-zA-Z0-9_-]{1,64}$.
_INVALID = re.compile(r"[^A-Za-z0-9_-]")
MAX_NAME = 64
CUSTOM_INPUT = "input"  # the one string argument a custom tool becomes


@dataclass(frozen=True)
class ToolSpec:
    """One client tool as the client knows it."""

    kind: Literal["function", "custom"]
    name: str
    namespace: str | None = None


@dataclass
class ToolTable:
    """Upstream function name -> client tool. Built while translating a request (`add`), read while
    translating its response (`lookup`)."""

    by_upstream: dict[str, ToolSpec] = field(default_factory=dict)

    def add(self, spec: ToolSpec) -> str:
        """Register `spec` and return its upstream name: `namespace__name` for namespaced tools,
        characters outside [A-Za-z0-9_-] replaced, cut to 64, and suffixed `_2`, `_3`... on a clash."""
        base = f"{spec.namespace}__{spec.name}" if spec.namespace else spec.name
        base = _INVALID.sub("_", base)[:MAX_NAME] or "tool"
        name, n = base, 1
        while name in self.by_upstream and self.by_upstream[name] != spec:
            n += 1
            suffix = f"_{n}"
            name = base[: MAX_NAME - len(suffix)] + suffix
        self.by_upstream[name] = spec
        return name

    def upstream_name(self, name: str, namespace: str | None = None) -> str:
        """The upstream name of a client tool seen in history (registered or not)."""
        for upstream, spec in self.by_upstream.items():
            if spec.name == name and spec.namespace == namespace:
                return upstream
        return self.add(ToolSpec("function", name, namespace))

    def lookup(self, upstream_name: str) -> ToolSpec:
        """The client tool behind an upstream call; an unknown name is a plain function of that name."""
        return self.by_upstream.get(upstream_name) or ToolSpec("function", upstream_name)
