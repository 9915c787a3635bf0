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
