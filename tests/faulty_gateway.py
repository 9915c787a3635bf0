"""`junction serve` with two deliberate bugs, for the internal-error tests (S17).

Translating a request for an `explode-request*` model raises, and so does the stream translator
once a stream for an `explode-stream*` model is under way. The exceptions carry text that must
never reach a client: an internal URL, a stack trace, and the provider's key (`LEAK`).
Run as `python -m tests.faulty_gateway serve --config ...`.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import gateway.chain.translate as layer
from gateway import cli
from models.translate import request as treq
from models.translate.stream import OpenAIToAnthropicStream

INTERNAL_URL = "http://10.20.30.40:8443/internal/v2/state"


def leak() -> str:
    return f"lost connection to {INTERNAL_URL} using {os.environ.get('FAULTY_PROVIDER_KEY', '')}"


def exploding_request(body: dict[str, Any], target: treq.Target) -> dict[str, Any]:
    if target.model_id.startswith("explode-request"):
        raise RuntimeError(leak())
    return treq.anthropic_to_openai(body, target)


class ExplodingStream(OpenAIToAnthropicStream):
    def __init__(self, client_model: str, input_estimate: int) -> None:
        super().__init__(client_model, input_estimate)
        self.explodes = "explode-stream" in client_model
        self.fed = 0

    def feed(self, event: Any) -> bytes:
        self.fed += 1
        if self.explodes and self.fed > 2:
            raise KeyError(leak())
        return super().feed(event)


class _Requests:
    """`treq` as the translate layer sees it, with one translator replaced."""

    def __getattr__(self, name: str) -> Any:
        return exploding_request if name == "anthropic_to_openai" else getattr(treq, name)


layer.treq = _Requests()  # type: ignore[assignment]
layer.OpenAIToAnthropicStream = ExplodingStream  # type: ignore[misc]

if __name__ == "__main__":
    sys.exit(cli.main())
