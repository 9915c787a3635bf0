"""Alias resolution: the requested name -> a configured provider model.

Order: alias -> exact provider model (full name, `name`, or a unique bare id) -> the
`default: true` model for anything else (Claude Code sends names such as `claude-opus-4-8`
that no config lists; they must reach the default model, never a 404).
"""

from __future__ import annotations

from typing import Any

from gateway.call import Call, get_call
from gateway.config import Config, Provider
from gateway.errors import Forbidden, InvalidRequest, NotFound


def select_model(config: Config, requested: str) -> tuple[Provider, str | None, bool]:
    """The provider for `requested`, the alias that was applied (if any), and whether the name
    was explicit (an alias or a configured model rather than the default fallback)."""
    name = requested.strip()
    alias = config.aliases.get(name)
    if alias is not None:
        return alias, name, True
    provider = config.lookup(name)
    if provider is not None:
        return provider, None, True
    if name in config.ambiguous:
        raise InvalidRequest(f"model '{name}' is ambiguous (matches {', '.join(config.ambiguous[name])}); "
                             "use the full provider/model name")  # fmt: skip
    if config.default is not None:
        return config.default, None, False
    known = ", ".join(sorted({p.model for p in config.providers} | set(config.aliases)))
    raise NotFound(f"model '{name}' is not configured and there is no default model (known: {known})")


class Aliases:
    def __init__(self, app: Any, config: Config) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        call = get_call(scope)
        provider, call.alias, call.explicit = select_model(self.config, call.requested_model or "")
        if call.key is not None and not call.key.allows(provider):
            raise Forbidden(f"this gateway key may not use model '{provider.model}'")
        set_candidates(call, self.config, (provider,))
        await self.app(scope, receive, send)


def set_candidates(call: Call, config: Config, chosen: tuple[Provider, ...]) -> None:
    """The failover chain: each chosen model followed by its own fallbacks, without repeats and
    without models the client's key may not use."""
    chain: dict[str, Provider] = {}
    for provider in chosen:
        for candidate in (provider, *config.fallbacks.get(provider.model, ())):
            if call.key is None or call.key.allows(candidate):
                chain.setdefault(candidate.model, candidate)
    call.candidates = tuple(chain.values())
    call.provider = call.candidates[0] if call.candidates else chosen[0]
