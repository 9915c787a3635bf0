"""Signatures for thinking blocks the gateway builds from upstream `reasoning_content`.

Real Anthropic signatures are model-bound: replaying a gateway-made block to Anthropic gives
400 "Invalid `signature`". Gateway signatures carry a fixed prefix so such blocks can be
recognised (and dropped) later, plus an HMAC of the text so they are not trivially forged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os

PREFIX = "junction1."
_KEY = os.environ.get("JUNCTION_SIGNING_KEY", "junction-thinking").encode("utf-8")


def sign(thinking: str) -> str:
    digest = hmac.new(_KEY, thinking.encode("utf-8"), hashlib.sha256).digest()[:18]
    return PREFIX + base64.urlsafe_b64encode(digest).decode("ascii")


def is_gateway_signature(signature: object) -> bool:
    return isinstance(signature, str) and signature.startswith(PREFIX)


# Responses `reasoning` items carry the upstream's reasoning back to the gateway on the next turn inside
# `encrypted_content`: a gateway-owned token (the text, base64, plus an HMAC over it) that a client cannot
# forge. An Anthropic thinking block's own signature rides along (`junction-rs2.`: a JSON payload), so
# the block can be given back to Anthropic, which requires it on tool-use turns with thinking on.
# `open_reasoning` returns None for anything the gateway did not mint.
REASONING_PREFIX = "junction-rs1."
_SIGNED_PREFIX = "junction-rs2."
_PREFIXES = (REASONING_PREFIX, _SIGNED_PREFIX)


def is_sealed_reasoning(token: object) -> bool:
    """Whether `token` claims to be a gateway-minted reasoning token (verified or not)."""
    return isinstance(token, str) and token.startswith(_PREFIXES)


def _mac(payload: str) -> str:
    digest = hmac.new(_KEY, b"reasoning\x00" + payload.encode("ascii", "replace"), hashlib.sha256).digest()[:18]
    return base64.urlsafe_b64encode(digest).decode("ascii")


def seal_reasoning(text: str, signature: str | None = None) -> str:
    if signature:
        raw, prefix = json.dumps({"t": text, "s": signature}, ensure_ascii=False).encode("utf-8"), _SIGNED_PREFIX
    else:
        raw, prefix = text.encode("utf-8"), REASONING_PREFIX
    payload = base64.urlsafe_b64encode(raw).decode("ascii")
    return f"{prefix}{payload}.{_mac(prefix + payload if signature else payload)}"


def open_reasoning(token: object) -> tuple[str, str | None] | None:
    """(text, Anthropic signature or None) of a token this gateway sealed; None when it did not, or
    when the token was altered."""
    if not is_sealed_reasoning(token):
        return None
    assert isinstance(token, str)
    signed = token.startswith(_SIGNED_PREFIX)
    prefix = _SIGNED_PREFIX if signed else REASONING_PREFIX
    payload, _, mac = token[len(prefix) :].rpartition(".")
    if not hmac.compare_digest(_mac(prefix + payload if signed else payload), mac):
        return None
    try:
        raw = base64.urlsafe_b64decode(payload.encode("ascii")).decode("utf-8")
        if not signed:
            return raw, None
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not (isinstance(value, dict) and isinstance(value.get("t"), str) and isinstance(value.get("s"), str)):
        return None
    return value["t"], value["s"]
