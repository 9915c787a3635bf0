"""Signatures for thinking blocks the gateway builds from upstream `reasoning_content`.

Real Anthropic signatures are model-bound: replaying a gateway-made block to Anthropic gives
400 "Invalid `signature`". Gateway signatures carry a fixed prefix so such blocks can be
recognised (and dropped) later, plus an HMAC of the text so they are not trivially forged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

PREFIX = "junction1."
_KEY = os.environ.get("JUNCTION_SIGNING_KEY", "junction-thinking").encode("utf-8")


def sign(thinking: str) -> str:
    digest = hmac.new(_KEY, thinking.encode("utf-8"), hashlib.sha256).digest()[:18]
    return PREFIX + base64.urlsafe_b64encode(digest).decode("ascii")


def is_gateway_signature(signature: object) -> bool:
    return isinstance(signature, str) and signature.startswith(PREFIX)


# Responses `reasoning` items carry the upstream's reasoning text back to the gateway on the next turn
# inside `encrypted_content`: a gateway-owned token (the text, base64, plus an HMAC over it) that a
# client cannot forge. `open_reasoning` returns None for anything the gateway did not mint.
REASONING_PREFIX = "junction-rs1."


def seal_reasoning(text: str) -> str:
    payload = base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii")
    digest = hmac.new(_KEY, b"reasoning\x00" + payload.encode("ascii"), hashlib.sha256).digest()[:18]
    return f"{REASONING_PREFIX}{payload}.{base64.urlsafe_b64encode(digest).decode('ascii')}"


def open_reasoning(token: object) -> str | None:
    if not isinstance(token, str) or not token.startswith(REASONING_PREFIX):
        return None
    payload, _, mac = token[len(REASONING_PREFIX) :].rpartition(".")
    expected = hmac.new(_KEY, b"reasoning\x00" + payload.encode("ascii", "replace"), hashlib.sha256).digest()[:18]
    if not hmac.compare_digest(base64.urlsafe_b64encode(expected).decode("ascii"), mac):
        return None
    try:
        return base64.urlsafe_b64decode(payload.encode("ascii")).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
