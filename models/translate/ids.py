"""Reversible tool-call ids between providers and Anthropic clients.

Anthropic requires `tool_use.id` to match `^[a-zA-Z0-9_-]+$`; Kimi issues ids such as
`functions.Read:0` and expects them back unchanged. Ids that do not fit are encoded as
`jx_<base64url>` on the way to the client and decoded on the way back, deterministically, so
the same id always maps to the same string and history replays stay consistent.
"""

from __future__ import annotations

import base64
import re

_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")
_PREFIX = "jx_"


def to_client_id(upstream_id: str) -> str:
    """An Anthropic-safe id for an upstream tool-call id."""
    if _SAFE.match(upstream_id) and not upstream_id.startswith(_PREFIX):
        return upstream_id
    encoded = base64.urlsafe_b64encode(upstream_id.encode("utf-8")).decode("ascii").rstrip("=")
    return _PREFIX + encoded


def to_upstream_id(client_id: str) -> str:
    """The original upstream id for an id produced by `to_client_id` (others pass unchanged)."""
    if not client_id.startswith(_PREFIX):
        return client_id
    payload = client_id[len(_PREFIX) :]
    try:
        return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return client_id
