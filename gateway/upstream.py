"""The upstream edge: one pooled httpx client per provider, request building, and the relay.

`Upstream` is the innermost ASGI app of the chain. It sends `call.upstream_body` to the chosen
provider and relays the answer: streams byte-for-byte as they arrive (no buffering), other
bodies whole. A client disconnect cancels the upstream request at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import ssl
import time
from typing import Any, AsyncIterator

import aiohttp
import httpx
import orjson
from httpx_aiohttp import AiohttpTransport

from gateway.call import Call, get_call
from gateway.chain.translate import upstream_request
from gateway.config import Config, Provider, Timeouts
from gateway.cooldown import Health
from gateway.errors import GatewayError, ProviderUnavailable, UpstreamAuthError, UpstreamError, UpstreamTimeout
from gateway.observe import Metrics
from gateway.selection import STATS as SELECTION
from models.providers import ANTHROPIC_VERSION, ApiStyle, AuthStyle
from models.usage import usage_of

log = logging.getLogger("junction")

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
        if provider.anthropic_betas is not None and "anthropic-beta" in headers:
            kept = [b.strip() for b in headers["anthropic-beta"].split(",") if b.strip() in provider.anthropic_betas]
            if kept:
                headers["anthropic-beta"] = ",".join(kept)
            else:
                del headers["anthropic-beta"]
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


def _stale_connection(exc: httpx.HTTPError) -> bool:
    """A reused keep-alive connection the server closed before answering anything."""
    cause = exc.__cause__
    return isinstance(cause, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)) and \
        not isinstance(cause, aiohttp.ClientConnectorError)


# OpenSSL verify codes worth naming; any other certificate failure reads as an untrusted issuer.
_CERT_PROBLEMS = {9: "certificate not yet valid", 10: "certificate expired",
                  62: "certificate does not match the upstream's host name",
                  64: "certificate does not match the upstream's IP address"}  # fmt: skip


def error_kind(exc: BaseException, before_first_byte: bool) -> str:
    """A short, bounded name for a transport failure (metrics label, `error.type` in traces)."""
    if isinstance(exc, TimeoutError) or (isinstance(exc, httpx.HTTPError) and is_timeout(exc)):
        return "timeout" if before_first_byte else "stream_idle_timeout"
    if not before_first_byte:
        return "stream_broken"
    cause = exc.__cause__
    return "tls" if isinstance(cause, aiohttp.ClientSSLError) else "connect"


def describe(exc: httpx.HTTPError) -> str:
    """A short cause for error messages, without URLs or hosts."""
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientConnectorCertificateError):
        # Never OpenSSL's own message: it names the host.
        code = getattr(cause.certificate_error, "verify_code", None)
        problem = _CERT_PROBLEMS.get(code) or "self-signed or unknown CA; set tls_ca_file to trust a private CA"
        return f"TLS certificate verification failed ({problem})"
    if isinstance(cause, aiohttp.ClientConnectorSSLError):
        return "TLS handshake failed (is the upstream really serving HTTPS?)"
    if isinstance(cause, aiohttp.ClientConnectorError):
        return "connection refused or host unreachable"
    if isinstance(cause, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)):
        return "connection closed by the upstream"
    return type(cause or exc).__name__


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """TLS settings for an upstream: the certificate chain and host name are always verified, and
    nothing (config, header, body field, query) turns that off. `ca_file` (a provider's
    `tls_ca_file`) replaces the default store: certifi's bundle, or SSL_CERT_FILE / SSL_CERT_DIR."""
    context = ssl.create_default_context(cafile=ca_file) if ca_file else httpx.create_ssl_context()
    # Already the defaults of both; set again so no change of default can ever weaken them.
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    return context


class ClientPool:
    """One pooled `httpx.AsyncClient` per provider, created on first use, closed on shutdown."""

    def __init__(self, timeouts: Timeouts) -> None:
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._tls: dict[str | None, ssl.SSLContext] = {}  # by CA file: loading a CA bundle takes ms
        # First-byte, idle and total deadlines are enforced by the retry loop itself; httpx's read
        # timeout is only a backstop behind them.
        backstop = max(timeouts.first_byte, timeouts.idle) + 60
        self._timeout = httpx.Timeout(connect=timeouts.connect, read=backstop, write=60.0, pool=10.0)
        # Idle connections are dropped after 4 s: many servers close theirs after 5 s, and a request
        # written to a connection the server is closing at that instant fails for no good reason.
        self._limits = httpx.Limits(max_connections=512, max_keepalive_connections=128, keepalive_expiry=4.0)

    def get(self, provider: Provider) -> httpx.AsyncClient:
        client = self._clients.get(provider.name)
        if client is None:
            # httpx's API over aiohttp's connection pool: about half the per-request cost of
            # httpcore's pool at the same behaviour (benchmarks/overhead.py).
            # The pool is keyed by provider name, so a provider's tls_ca_file applies to its client only.
            if provider.tls_ca_file not in self._tls:
                try:
                    self._tls[provider.tls_ca_file] = tls_context(provider.tls_ca_file)
                except OSError:  # checked at config load; removed or garbled since
                    raise UpstreamError(f"upstream '{provider.model}': its tls_ca_file could not be loaded") from None
            transport = AiohttpTransport(verify=self._tls[provider.tls_ca_file], limits=self._limits)
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


# Upstream answers worth another model: rate limits and server-side failures. Client errors
# (400, 404, 422, ...) would fail the same way anywhere.
RETRYABLE = frozenset((408, 409, 425, 429, 500, 502, 503, 504, 520, 521, 522, 524, 529))


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Seconds from `retry-after-ms` or `retry-after` (HTTP dates are not used by LLM APIs)."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = response.headers.get(name)
        if value is not None:
            with contextlib.suppress(ValueError):
                return max(0.0, float(value) * scale)
    return None


class _Failed(Exception):
    """One attempt failed before anything reached the client; the loop may try again."""

    def __init__(self, error: GatewayError, retry_after: float | None = None, same_again: bool = False,
                 answer: tuple[dict[str, Any], bytes] | None = None) -> None:  # fmt: skip
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after
        self.same_again = same_again  # worth retrying the same model (a status, not a dead host)
        self.answer = answer  # the upstream's own error response (start message, body), held back


class Upstream:
    """The innermost app and the one retry loop: tries the call's candidates in order, failing
    over on connect errors, timeouts before the first byte, 429 and 5xx, never after a byte has
    reached the client."""

    def __init__(self, pool: ClientPool, config: Config, health: Health, metrics: Metrics | None = None) -> None:
        self.pool = pool
        self.timeouts = config.timeouts
        self.policy = config.failover
        self.health = health
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        call = get_call(scope)
        task = asyncio.current_task()
        assert task is not None
        watcher = asyncio.ensure_future(_cancel_on_disconnect(receive, task, call))
        try:
            await self._serve(call, send)
        except asyncio.CancelledError:
            if not call.client_gone:
                raise
            task.uncancel()  # the client left: nothing more to send, nothing to report
        finally:
            watcher.cancel()

    async def _serve(self, call: Call, send: Any) -> None:
        candidates = call.candidates or ((call.provider,) if call.provider else ())
        missing = [p for p in candidates if not p.available]
        candidates = tuple(p for p in candidates if p.available)
        if not candidates:
            provider = missing[0]
            raise ProviderUnavailable(f"model '{provider.model}' is unavailable: environment variable "
                                      f"{', '.join(provider.missing_env)} is not set on the gateway")  # fmt: skip
        admitted = [p for p in candidates if self.health.admit(p.model)]
        if not admitted:
            wait = max(1, math.ceil(self.health.reopens_in(p.model for p in candidates)))
            status = 529 if call.protocol is ApiStyle.ANTHROPIC else 503
            raise GatewayError(f"every model for this request is cooling down after failures; retry in {wait} s",
                               status=status, code="all_models_cooling_down",
                               headers={"retry-after": str(wait)})  # fmt: skip
        deadline = call.started + self.timeouts.total
        first = call.provider
        failure: _Failed | None = None
        for position, provider in enumerate(admitted):
            if provider is not call.provider:
                call.provider = provider
                call.fallback_from = first.model if first is not None else None
                call.upstream_body = orjson.dumps(upstream_request(call))
                if self.metrics is not None:
                    self.metrics.fallbacks.labels(provider.model).inc()
            for attempt in range(self.policy.retries + 1):
                final = position == len(admitted) - 1 and attempt == self.policy.retries
                try:
                    with SELECTION.busy(provider.model):  # in flight on its model, for `least_busy`
                        await self._attempt(call, provider, send, final, deadline)
                    return
                except _Failed as failed:
                    failure = failed
                except asyncio.CancelledError:
                    self.health.release(provider.model)
                    raise
                if attempt == self.policy.retries or not failure.same_again:
                    break  # out of retries, or a dead host: move on
                # Retry-After when the upstream gave one, else exponential backoff with jitter.
                wait = failure.retry_after if failure.retry_after is not None else \
                    min(8.0, 0.25 * 2**attempt) * random.uniform(0.5, 1.5)
                cooling = self.health.reopens_in((provider.model,))
                if wait > self.policy.max_retry_after or cooling > wait or time.perf_counter() + wait >= deadline:
                    break  # waiting would take too long, or the model is cooling longer than that
                await asyncio.sleep(max(wait, cooling) + 0.01)  # past the cooldown the Retry-After set
                if not self.health.admit(provider.model):
                    break
        assert failure is not None
        if failure.answer is None:
            raise failure.error
        # Out of candidates after an error answer: the client gets that answer (re-expressed in
        # its protocol by the translate layer), not a generic one.
        start, body = failure.answer
        await send(start)
        await send({"type": "http.response.body", "body": body})

    async def _attempt(self, call: Call, provider: Provider, send: Any, final: bool, deadline: float) -> None:
        """One upstream request. Raises `_Failed` (nothing sent yet) or relays the answer."""
        call.attempts += 1
        if call.endpoint != "chat":
            url = provider.endpoint_url("/count_tokens")
        else:
            url = provider.responses_url if call.upstream_api is ApiStyle.RESPONSES else provider.url
        if call.query and provider.api is ApiStyle.ANTHROPIC and call.protocol is ApiStyle.ANTHROPIC:
            # The beta surface (`?beta=true`) reaches an Anthropic upstream as the client used it.
            url += ("&" if "?" in url else "?") + call.query
        client = self.pool.get(provider)
        assert call.upstream_body is not None
        request = client.build_request("POST", url, content=call.upstream_body,
                                       headers=upstream_headers(call, provider))  # fmt: skip
        sent = time.perf_counter()
        first_chunk = b""
        chunks: AsyncIterator[bytes] | None = None
        try:
            async with asyncio.timeout(min(self.timeouts.first_byte, max(0.0, deadline - sent))):
                try:
                    response = await client.send(request, stream=True)
                except httpx.HTTPError as exc:
                    if not _stale_connection(exc):
                        raise
                    # The pooled connection was closed by the server as the request went out: it
                    # never reached the upstream. Once more on a fresh connection; not a failure.
                    response = await client.send(client.build_request(
                        "POST", url, content=call.upstream_body, headers=upstream_headers(call, provider)), stream=True)
                streaming = call.stream and response.status_code < 400
                if streaming:
                    # A stream counts as answered with its first bytes: until then, failing over
                    # is still invisible to the client.
                    chunks = response.aiter_bytes()
                    first_chunk = await anext(chunks, b"")
        except (TimeoutError, httpx.HTTPError) as exc:
            error = self._transport_error(provider, exc, before_first_byte=True)
            raise self._give_up(call, provider, error_kind(exc, before_first_byte=True), error, final) from None
        call.upstream_ms = (time.perf_counter() - sent) * 1000
        status = response.status_code
        if status in (401, 403) and not provider.passthrough_auth:
            # The provider refused the gateway's own key: an operator problem, not the client's.
            # Another model (another key) may work; this one is not retried and the client only
            # learns that the upstream refused the gateway (the body may echo the key).
            said = b""
            with contextlib.suppress(TimeoutError, httpx.HTTPError):
                async with asyncio.timeout(5):
                    said = await response.aread()
            await response.aclose()
            # The operator needs the provider's words (e.g. Kimi's coding-agent gate); the log's
            # redaction filter masks a key the provider may have echoed.
            log.warning("upstream '%s' refused the gateway's credentials (HTTP %d); check its access_key and "
                        "headers. It said: %s", provider.model, status,
                        said[:500].decode("utf-8", errors="replace"))  # fmt: skip
            error = UpstreamAuthError(f"the upstream provider for model '{provider.model}' refused the gateway's "
                                      "credentials; the gateway operator must check its configuration")  # fmt: skip
            raise self._give_up(call, provider, f"auth_refused_{status}", error, final)
        if 300 <= status < 400:
            # Never followed (a redirect could send the request, and its key, anywhere) and no
            # API answers with one: a misconfigured upstream, so the next candidate is tried.
            await response.aclose()
            error = UpstreamError(f"upstream '{provider.model}' answered with a redirect (HTTP {status}), "
                                  "which the gateway does not follow; check its base_url")  # fmt: skip
            raise self._give_up(call, provider, "redirect", error, final)
        if status in RETRYABLE and not final:
            retry_after = retry_after_seconds(response)
            answer = None
            with contextlib.suppress(TimeoutError, httpx.HTTPError):
                async with asyncio.timeout(5):
                    body = await response.aread()
                headers = relay_headers(response) + [(b"content-length", str(len(body)).encode())]
                answer = ({"type": "http.response.start", "status": status, "headers": headers}, body)
            await response.aclose()
            self._failed(call, provider, f"http_{status}", retry_after if status == 429 else None)
            raise _Failed(UpstreamError(f"upstream '{provider.model}' answered {status}"), retry_after, True, answer)
        if status in RETRYABLE:
            self._failed(call, provider, f"http_{status}", retry_after_seconds(response) if status == 429 else None)
        else:
            self.health.success(provider.model)
            if status < 400:  # time to first byte of a good answer feeds `prefer: fastest`
                SELECTION.observe(provider.model, call.upstream_ms)
        try:
            start = {"type": "http.response.start", "status": status, "headers": relay_headers(response)}
            if chunks is not None:
                await self._relay_stream(send, start, first_chunk, chunks, deadline)
            else:
                async with asyncio.timeout(max(0.0, deadline - time.perf_counter())):
                    body = await response.aread()
                if status == 200:
                    with contextlib.suppress(orjson.JSONDecodeError):
                        call.add_usage(usage_of(call.upstream_api, orjson.loads(body)))
                start["headers"].append((b"content-length", str(len(body)).encode()))
                await send(start)
                await send({"type": "http.response.body", "body": body})
        except (TimeoutError, httpx.HTTPError) as exc:
            self._count(call, provider, error_kind(exc, before_first_byte=False))
            raise self._transport_error(provider, exc, before_first_byte=False) from None
        except UpstreamTimeout:
            self._count(call, provider, "client_stalled")
            raise
        finally:
            await response.aclose()

    async def _relay_stream(self, send: Any, start: dict[str, Any], first: bytes,
                            chunks: AsyncIterator[bytes], deadline: float) -> None:  # fmt: skip
        """Bytes as they arrive; a silence longer than the idle timeout ends the stream."""
        await send(start)
        if first:
            await send({"type": "http.response.body", "body": first, "more_body": True})
        loop = asyncio.get_running_loop()
        offset = loop.time() - time.perf_counter()  # deadline is on the perf_counter clock
        writing = False
        try:
            async with asyncio.timeout(None) as timer:
                while True:
                    # One idle limit for both directions: a client that reads nothing for that long
                    # (backpressure holds the upstream meanwhile) loses the stream too.
                    timer.reschedule(min(loop.time() + self.timeouts.idle, deadline + offset))
                    writing = False
                    chunk = await anext(chunks, None)
                    if chunk is None:
                        break
                    if chunk:
                        writing = True
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except TimeoutError:
            if writing:
                raise UpstreamTimeout("the client stopped reading the stream for longer than the idle timeout") from None
            raise
        await send({"type": "http.response.body", "body": b""})

    def _failed(self, call: Call, provider: Provider, kind: str, retry_after: float | None = None) -> None:
        """An attempt failed before answering: counts towards the model's cooldown."""
        self._count(call, provider, kind)
        if self.health.failure(provider.model, retry_after) and self.metrics is not None:
            self.metrics.cooldowns.labels(provider.model).inc()

    def _give_up(self, call: Call, provider: Provider, kind: str, error: GatewayError, final: bool) -> Exception:
        """A failed attempt without an answer worth relaying: recorded, and the exception that ends it
        (for the last candidate, the error the client gets)."""
        self._failed(call, provider, kind)
        return error if final else _Failed(error)

    def _count(self, call: Call, provider: Provider, kind: str) -> None:
        call.error_type = kind
        if self.metrics is not None:
            self.metrics.upstream_errors.labels(provider.model, kind).inc()

    @staticmethod
    def _transport_error(provider: Provider, exc: BaseException, before_first_byte: bool) -> GatewayError:
        if isinstance(exc, TimeoutError) or (isinstance(exc, httpx.HTTPError) and is_timeout(exc)):
            what = "did not answer in time" if before_first_byte else "stopped sending (idle timeout)"
            return UpstreamTimeout(f"upstream '{provider.model}' {what}")
        assert isinstance(exc, httpx.HTTPError)
        what = "could not be reached" if before_first_byte else "failed mid-response"
        return UpstreamError(f"upstream '{provider.model}' {what} ({describe(exc)})")
