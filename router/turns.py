"""The text a routing decision is made on: the latest genuine user text of a request body.

Pure functions over an Anthropic Messages, OpenAI Chat Completions or OpenAI Responses body (a parsed
dict). A Responses body's `input` (a string or a list of items) is read as a list of messages first:
message items by their role, `function_call_output` / `custom_tool_call_output` items as tool results
(the agent's tool loop), calls and reasoning as assistant activity, everything else skipped.

What is *not* genuine user text, and is skipped:

* envelopes that agents put into user turns: Claude Code's ``<system-reminder>`` blocks, Codex's
  ``<environment_context>`` and AGENTS.md (``# AGENTS.md instructions for ...`` + ``<INSTRUCTIONS>``) messages, hook output
  (``<user-prompt-submit-hook>``), local command output and caveats (``<local-command-stdout>``,
  ``<local-command-caveat>``, ``<bash-stdout>``...), task notifications, IDE context and the like
  (see `ENVELOPE_TAGS`), plus ``[Request interrupted by user]`` markers and the "This session is
  being continued from a previous conversation" summary that follows a compaction;
* tool results (Anthropic ``tool_result`` blocks, OpenAI ``tool`` messages): a turn made only of
  them is the agent's tool loop, not a new request;
* images, documents and audio.

A slash command (``<command-name>/review</command-name>`` + ``<command-args>``) is kept as
``review <args>``: the command name says what the user asked for.

Over-long text is cut to `max_chars`, keeping the head and the tail (the encoder then cuts to its
token budget the same way).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal

Protocol = Literal["anthropic", "openai", "responses"]

# Wrappers whose whole content is context, not a request (Claude Code and other coding agents).
ENVELOPE_TAGS = (
    "system-reminder", "system_reminder", "user-prompt-submit-hook", "post-tool-use-hook",
    "local-command-stdout", "local-command-stderr", "local-command-caveat",
    "bash-input", "bash-stdout", "bash-stderr", "command-message",
    "task-notification", "agent-message", "teammate-message", "cross-session-message",
    "queued-notification", "mcp-resource-update", "mcp-polling-update",
    "function_results", "tool_use_error", "sandbox_violations", "persisted-output", "total_tokens",
    "ide_selection", "ide_opened_file", "ide_diagnostics", "user-memory-input", "fork-boilerplate",
    "environment_details", "non-user-message", "fetched-web-content", "untrusted-widget-state",
    "environment_context", "INSTRUCTIONS", "user_instructions", "turn_aborted", "user_shell_command",
)  # fmt: skip
# Wrappers around the user's own words (Cline-style agents): keep the content, drop the tags.
UNWRAP_TAGS = ("task", "feedback", "user_message", "user-message", "answer")

_ENVELOPE = re.compile(r"<(%s)\b[^>]*>.*?(?:</\1\s*>|\Z)" % "|".join(map(re.escape, ENVELOPE_TAGS)), re.S)
_UNWRAP = re.compile(r"</?(?:%s)\b[^>]*>" % "|".join(map(re.escape, UNWRAP_TAGS)))
_COMMAND_NAME = re.compile(r"<command-name>\s*/?(.*?)\s*</command-name>", re.S)
_COMMAND_ARGS = re.compile(r"<command-args>(.*?)</command-args>", re.S)
_MARKERS = re.compile(r"\[Request interrupted by user[^\]]*\]|\[Image #?\d*\]|\[Pasted text #\d+[^\]]*\]"
                      r"|^# AGENTS\.md instructions for .*$", re.M)
_CONTINUED = "This session is being continued from"
_BILLING = re.compile(r"^x-anthropic-billing-header:.*$", re.M)
_SPACES = re.compile(r"[ \t]+")
_BLANKS = re.compile(r"\n\s*\n+")

ELLIPSIS = "\n…\n"


@dataclass(frozen=True)
class Turn:
    """What a request says about the user's latest request.

    `text` is the latest genuine user text in the conversation (possibly from an earlier user turn
    when the latest one has none); `has_text` says whether the latest user turn itself had some.
    `kind` is "text", "tool_result" (the agent's tool loop), "no_text" (only images, envelopes or
    nothing) or "empty" (no user turn at all). `history` holds earlier genuine user texts, most
    recent first; `genuine_turns` counts the user turns with genuine text so far.
    """

    text: str
    has_text: bool
    kind: str
    session_key: str
    history: tuple[str, ...] = ()
    genuine_turns: int = 0
    truncated: bool = False
    fingerprint: str = field(default="", compare=False)


def clean_text(text: str) -> str:
    """Remove agent envelopes and markers from one piece of user text; '' when nothing is left."""
    if not text:
        return ""
    command = _COMMAND_NAME.search(text)
    if command:
        args = _COMMAND_ARGS.search(text)
        name = command.group(1).strip()
        text = _COMMAND_ARGS.sub("", _COMMAND_NAME.sub("", text))
        text = f"{name} {args.group(1).strip() if args else ''}\n{text}"
    text = _ENVELOPE.sub(" ", text)
    text = _UNWRAP.sub(" ", text)
    text = _MARKERS.sub(" ", text)
    if text.lstrip().startswith(_CONTINUED):
        return ""
    text = _BLANKS.sub("\n\n", _SPACES.sub(" ", text))
    return text.strip()


def truncate(text: str, max_chars: int, head_fraction: float = 0.6) -> tuple[str, bool]:
    """Keep the head and the tail of an over-long text."""
    if max_chars <= 0 or len(text) <= max_chars:
        return text, False
    head = int(max_chars * head_fraction)
    tail = max_chars - head - len(ELLIPSIS)
    return text[:head].rstrip() + ELLIPSIS + text[len(text) - max(tail, 0):].lstrip(), True


def _blocks(content: Any) -> list[Any]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return content
    return [content]


def _user_parts(content: Any) -> tuple[list[str], bool]:
    """(genuine texts, had a tool result) of one user message's content, both protocols."""
    texts: list[str] = []
    tool = False
    for block in _blocks(content):
        if isinstance(block, str):
            block = {"type": "text", "text": block}
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind in ("text", "input_text"):
            cleaned = clean_text(str(block.get("text") or ""))
            if cleaned:
                texts.append(cleaned)
        elif kind in ("tool_result", "function_call_output", "tool"):
            tool = True
        # images, documents, audio, files, thinking: not text to route on
    return texts, tool


def _raw_text(content: Any) -> str:
    parts = []
    for block in _blocks(content):
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and isinstance(block.get("text"), str):
            parts.append(block["text"])
    return "\n".join(parts)


def system_text(body: dict[str, Any], protocol: Protocol) -> str:
    """The system prompt as plain text (Claude Code's per-request billing line removed)."""
    if protocol == "anthropic":
        raw = _raw_text(body.get("system"))
    else:
        raw = "\n".join(_raw_text(m.get("content")) for m in _messages(body, protocol) if m.get("role") in ("system", "developer"))
    return _BILLING.sub("", raw).strip()


# Responses items that are the agent's own activity (a turn of the assistant), and tool results.
_ASSISTANT_ITEMS = ("function_call", "custom_tool_call", "reasoning", "local_shell_call", "shell_call",
                    "apply_patch_call", "web_search_call", "tool_search_call")  # fmt: skip
_TOOL_OUTPUT_ITEMS = ("function_call_output", "custom_tool_call_output", "local_shell_call_output",
                      "shell_call_output", "apply_patch_call_output", "tool_search_output")  # fmt: skip


def _responses_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A Responses body's `instructions` and `input` as Chat-style messages."""
    out: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str):
        out.append({"role": "system", "content": body["instructions"]})
    items = body.get("input")
    if isinstance(items, str):
        return [*out, {"role": "user", "content": items}]
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "message" and isinstance(item.get("role"), str):
            out.append({"role": item["role"], "content": item.get("content")})
        elif kind in _TOOL_OUTPUT_ITEMS:
            out.append({"role": "tool", "content": None})
        elif kind in _ASSISTANT_ITEMS:
            out.append({"role": "assistant", "content": None})
    return out


def _messages(body: dict[str, Any], protocol: Protocol = "anthropic") -> list[dict[str, Any]]:
    if protocol == "responses":
        return _responses_messages(body)
    messages = body.get("messages")
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def session_key(body: dict[str, Any], protocol: Protocol, header: str | None = None) -> str:
    """`x-junction-session` when given, else a Responses body's `prompt_cache_key`, else sha256(system
    text + first user message)."""
    if header and header.strip():
        return "h:" + hashlib.sha256(header.strip().encode("utf-8")).hexdigest()[:32]
    cache_key = body.get("prompt_cache_key") if protocol == "responses" else None
    if isinstance(cache_key, str) and cache_key.strip():
        # Codex sets it to its session id; its first user message (environment context) and developer
        # prompt are the same for every session in one folder, so they cannot tell sessions apart.
        return "k:" + hashlib.sha256(cache_key.strip().encode("utf-8")).hexdigest()[:32]
    first = next((m for m in _messages(body, protocol) if m.get("role") == "user"), None)
    seed = system_text(body, protocol) + "\x00" + (_raw_text(first.get("content")) if first else "")
    return "c:" + hashlib.sha256(seed.encode("utf-8")).hexdigest()[:32]


def _user_turns(body: dict[str, Any], protocol: Protocol) -> Iterable[tuple[list[str], bool, bool]]:
    """(genuine texts, tool results present, is the latest turn) per user turn, oldest first.

    OpenAI `tool` messages count as a user turn made of tool results, as Anthropic sends them."""
    messages = _messages(body, protocol)
    # The latest turn is the last non-assistant message (a trailing assistant prefill is ignored).
    last = len(messages) - 1
    while last >= 0 and messages[last].get("role") == "assistant":
        last -= 1
    for i, msg in enumerate(messages[: last + 1]):
        role = msg.get("role")
        if role == "user":
            texts, tool = _user_parts(msg.get("content"))
            yield texts, tool, i == last
        elif role in ("tool", "function") and protocol != "anthropic":
            yield [], True, i == last


def latest_turn(body: dict[str, Any], protocol: Protocol, session_header: str | None = None, *,
                max_chars: int = 2000, history: int = 3) -> Turn:  # fmt: skip
    """The latest genuine user text, whether the latest user turn had any, and the session key."""
    key = session_key(body, protocol, session_header)
    genuine: list[str] = []
    latest_texts: list[str] = []
    latest_tool = False
    seen_latest = False
    for texts, tool, is_latest in _user_turns(body, protocol):
        if texts:
            genuine.append("\n".join(texts))
        if is_latest:
            seen_latest, latest_texts, latest_tool = True, texts, tool
    if not seen_latest:
        return Turn("", False, "empty", key)
    if latest_texts:
        kind = "text"
    elif latest_tool:
        kind = "tool_result"
    else:
        kind = "no_text"
    if not genuine:
        return Turn("", False, kind, key)
    text, cut = truncate(genuine[-1], max_chars)
    earlier = tuple(truncate(t, max_chars)[0] for t in reversed(genuine[-1 - history : -1])) if history else ()
    fingerprint = hashlib.sha256(f"{len(genuine)}\x00{text}".encode("utf-8")).hexdigest()[:24]
    return Turn(text, bool(latest_texts), kind, key, earlier, len(genuine), cut, fingerprint)
