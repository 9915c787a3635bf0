"""The upstream edge: one pooled httpx client per provider, request building, and the relay.

`Upstream` is the innermost ASGI app of the chain. It sends `call.upstream_body` to the chosen
provider and relays the answer: streams byte-for-byte as they arrive (no buffering), other
bodies whole. A client disconnect cancels the upstream request at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp
import httpx
import orjson
from httpx_aiohttp import AiohttpTransport

from gateway.call import Call, get_call
from gateway.config import Config, Provider
from gateway.errors import ProviderUnavailable, UpstreamError, UpstreamTimeout
from models.providers import ANTHROPIC_VERSION, ApiStyle, AuthStyle
from models.usage import usage_of

# Client headers that may travel upstream; everything else (cookies, the gateway key, the client's
# User-Agent and Accept-Encoding) stays here.
_FORWARD_ALWAYS = ("x-request-id", "traceparent", "tracestate")
_FORWARD_ANTHROPIC = ("anthropic-beta", "anthropic-version")

# Upstream response headers a client may see; hop-by-hop and encoding headers never pass, since
# the body may have been decompressed on the way.
_RELAY_HEADERS = frozenset(
    (b"content-type", b"retry-after", b"retry-after-ms", b"request-id", b"x-request-id",
     b"x-should-retry", b"openai-processing-ms")
)  # fmt: skip
_RELAY_PREFIXES = (b"x-ratelimit-", b"anthropic-ratelimit-")
USER_AGENT = "junction-gateway/0.1"


def upstream_headers(call: Call, provider: Provider) -> dict[str, str]:
    """Auth per the provider's style, its configured headers, and the allowlisted client ones."""
    headers = {"content-type": "application/json", "accept": "application/json", "user-agent": USER_AGENT}
    if call.stream:
        # Compressed SSE is held back until a whole deflate block arrives.
        headers["accept"] = "text/event-stream"
        headers["accept-encoding"] = "identity"
    for name in _FORWARD_ALWAYS:
        if name in call.headers:
            headers[name] = call.headers[name]
    if provider.api is ApiStyle.ANTHROPIC:
        headers["anthropic-version"] = ANTHROPIC_VERSION
        for name in _FORWARD_ANTHROPIC:
            if name in call.headers:
                headers[name] = call.headers[name]
    key = call.credential if provider.passthrough_auth else provider.access_key
    if key:
        style = provider.spec.auth
        if provider.passthrough_auth and style is AuthStyle.NONE:
            style = AuthStyle.BEARER
        if style is AuthStyle.BEARER:
            headers["authorization"] = f"Bearer {key}"
        elif style is AuthStyle.X_API_KEY:
            headers["x-api-key"] = key
        elif style is AuthStyle.API_KEY:
            headers["api-key"] = key
    for name, value in provider.headers:
        headers[name.lower()] = value
    return headers


def relay_headers(response: httpx.Response) -> list[tuple[bytes, bytes]]:
    return [
        (lower, value)
        for name, value in response.headers.raw
        if (lower := name.lower()) in _RELAY_HEADERS or lower.startswith(_RELAY_PREFIXES)
    ]


def is_timeout(exc: httpx.HTTPError) -> bool:
    """Whether a transport error was a timeout (the aiohttp transport maps every connection
    error to ConnectTimeout, so judge by the original exception)."""
    cause = exc.__cause__
    if cause is not None:
        return isinstance(cause, (aiohttp.ServerTimeoutError, asyncio.TimeoutError))
    return isinstance(exc, httpx.TimeoutException)


def describe(exc: httpx.HTTPError) -> str:
    """A short cause for error messages, without URLs or hosts."""
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientConnectorError):
        return "connection refused or host unreachable"
    if isinstance(cause, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)):
        return "connection closed by the upstream"
    return type(cause or exc).__name__


class ClientPool:
    """One pooled `httpx.AsyncClient` per provider, created on first use, closed on shutdown."""

    def __init__(self, connect_s: float = 10.0, read_s: float = 600.0) -> None:
        self._clients: dict[str, httpx.AsyncClient] = {}
        # Reasoning models can think for minutes before the first byte; the read timeout is the
        # longest silence tolerated between two reads.
        self._timeout = httpx.Timeout(connect=connect_s, read=read_s, write=60.0, pool=10.0)
        self._limits = httpx.Limits(max_connections=512, max_keepalive_connections=128, keepalive_expiry=60)

    def get(self, provider: Provider) -> httpx.AsyncClient:
        client = self._clients.get(provider.name)
        if client is None:
            # httpx's API over aiohttp's connection pool: about half the per-request cost of
            # httpcore's pool at the same behaviour (benchmarks/overhead.py).
            transport = AiohttpTransport(limits=self._limits)
            client = httpx.AsyncClient(timeout=self._timeout, limits=self._limits, follow_redirects=False,
                                       transport=transport)  # fmt: skip
            self._clients[provider.name] = client
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()


async def _cancel_on_disconnect(receive: Any, task: asyncio.Task[Any], call: Call) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            call.client_gone = True
            task.cancel()
            return


class Upstream:
    def __init__(self, pool: ClientPool) -> None:
        self.pool = pool

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        call = get_call(scope)
        task = asyncio.current_task()
        assert task is not None
        watcher = asyncio.ensure_future(_cancel_on_disconnect(receive, task, call))
        try:
            await self._relay(call, send)
        except asyncio.CancelledError:
            if not call.client_gone:
                raise
            task.uncancel()  # the client left: nothing more to send, nothing to report
        finally:
            watcher.cancel()

    async def _relay(self, call: Call, send: Any) -> None:
        provider = call.provider
        assert provider is not None and call.upstream_body is not None
        if not provider.available:
            raise ProviderUnavailable(
                f"model '{provider.model}' is unavailable: environment variable "
                f"{', '.join(provider.missing_env)} is not set on the gateway"
            )
        url = provider.url if call.endpoint == "chat" else provider.endpoint_url("/count_tokens")
        if call.query and provider.api is ApiStyle.ANTHROPIC and call.protocol is ApiStyle.ANTHROPIC:
            # The beta surface (`?beta=true`) reaches an Anthropic upstream as the client used it.
            url += ("&" if "?" in url else "?") + call.query
        client = self.pool.get(provider)
        request = client.build_request("POST", url, content=call.upstream_body,
                                       headers=upstream_headers(call, provider))  # fmt: skip
        sent = time.perf_counter()
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            if is_timeout(exc):
                raise UpstreamTimeout(f"upstream '{provider.model}' did not answer in time") from None
            raise UpstreamError(f"upstream '{provider.model}' could not be reached ({describe(exc)})") from None
        call.upstream_ms = (time.perf_counter() - sent) * 1000
        try:
            start = {"type": "http.response.start", "status": response.status_code,
                     "headers": relay_headers(response)}  # fmt: skip
            if call.stream and response.status_code < 400:
                await send(start)
                async for chunk in response.aiter_bytes():
                    if chunk:
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
            else:
                body = await response.aread()
                if response.status_code == 200:
                    with contextlib.suppress(orjson.JSONDecodeError):
                        call.add_usage(usage_of(provider.api, orjson.loads(body)))
                start["headers"].append((b"content-length", str(len(body)).encode()))
                await send(start)
                await send({"type": "http.response.body", "body": body})
        except httpx.HTTPError as exc:
            if is_timeout(exc):
                raise UpstreamTimeout(f"upstream '{provider.model}' stopped sending") from None
            raise UpstreamError(f"upstream '{provider.model}' failed mid-response ({describe(exc)})") from None
        finally:
            await response.aclose()
