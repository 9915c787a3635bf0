"""Who may open the console: a gateway key with `role: admin`, presented as a header (scripts) or once
on the login page, which answers with a signed cookie.

The cookie is `name.expiry.mac`, the MAC keyed by the admin key's own hash: every worker and replica
with the same config accepts it, and revoking the key (a reload) ends its sessions."""

from __future__ import annotations

import hashlib
import hmac
import time

from gateway.chain.auth import match_key, presented_credential
from gateway.config import Config, GatewayKey

COOKIE = "junction_console"
SESSION_S = 12 * 3600


class NotAdmin(Exception):
    """A valid gateway key without the admin role."""


def _mac(key: GatewayKey, name: str, expiry: int) -> str:
    return hmac.new(key.sha256, f"{name}\n{expiry}".encode(), hashlib.sha256).hexdigest()


def session_token(key: GatewayKey, now: float | None = None) -> str:
    expiry = int((time.time() if now is None else now) + SESSION_S)
    return f"{key.name}.{expiry}.{_mac(key, key.name, expiry)}"


def from_token(config: Config, token: str, now: float | None = None) -> GatewayKey | None:
    parts = token.rsplit(".", 2)  # a key's name may itself hold dots
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    name, expiry, mac = parts[0], int(parts[1]), parts[2]
    if expiry < (time.time() if now is None else now):
        return None
    for key in config.gateway_keys:
        if key.name == name and key.role == "admin" and hmac.compare_digest(_mac(key, name, expiry), mac):
            return key
    return None


def cookie_value(headers: dict[str, str]) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and value:
            return value
    return None


def admin(config: Config, headers: dict[str, str]) -> GatewayKey | None:
    """The admin key behind a request (header or session cookie); raises NotAdmin for another valid key."""
    credential = presented_credential(headers)
    if credential is not None:
        key = match_key(config.gateway_keys, credential)
        if key is not None and key.role != "admin":
            raise NotAdmin(key.name)
        if key is not None:
            return key
    token = cookie_value(headers)
    return from_token(config, token) if token else None


def login(config: Config, credential: str) -> GatewayKey | None:
    """The admin key a login form presented; raises NotAdmin for another valid key."""
    key = match_key(config.gateway_keys, credential.strip() or None)
    if key is not None and key.role != "admin":
        raise NotAdmin(key.name)
    return key
