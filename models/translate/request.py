"""The request half of protocol translation, as pure functions of the parsed JSON body.

* `anthropic_to_openai`: a Messages request (Claude Code) -> a Chat Completions request for an
  OpenAI-compatible upstream (DeepSeek, Kimi, OpenAI, ...), shaped by the upstream's `Quirks`.
* `openai_to_anthropic`: a Chat Completions request (OpenAI SDK clients) -> a Messages request
  for a native Anthropic upstream.
* `strip_gateway_thinking`: Messages -> Messages, removing thinking blocks Anthropic would reject.

Both translators build the outgoing body from scratch, so every field they do not map is dropped.
Nothing here does I/O; the input body is never mutated.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from models.providers import Quirks
from models.translate.ids import to_client_id, to_upstream_id
from models.translate.thinking import is_gateway_signature

JOIN = "\n\n"  # between text blocks that become one string
BILLING_PREFIX = "x-anthropic-billing-header:"
TOOL_ERROR_PREFIX = "[tool error] "
EMPTY_TOOL_RESULT = "[empty tool result]"
IMAGE_PLACEHOLDER = "[image omitted: this model cannot read images]"
IMAGE_MOVED = "[image: attached in the next user message]"
# DeepSeek v4 and Kimi K2.5/K2.6 treat "" as a missing `reasoning_content`; one space passes.
REASONING_PLACEHOLDER = " "


@dataclass(frozen=True)
class Target:
    """The upstream a request is translated for."""

    model_id: str
    prefix: str
    quirks: Quirks


Json = dict[str, Any]


# --------------------------------------------------------------------------------------------
# Anthropic Messages -> OpenAI Chat Completions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """Per-request decisions that several block converters need."""

    text_only: bool
    replay_reasoning: bool


def anthropic_to_openai(body: Json, target: Target) -> Json:
    """A Chat Completions request equivalent to the Messages request `body`.

    Server tools (`web_search_*`, `web_fetch_*`, `code_execution_*`, `bash_*`, `text_editor_*`,
    `computer_*`, `memory_*`, tool search, MCP toolsets) have no OpenAI equivalent and are dropped,
    with `server_tool_use` / `*_tool_result` blocks in history. Dropped fields: `top_k`,
    `cache_control` (everywhere), `context_management`, `container`, `service_tier`,
    `inference_geo`, `mcp_servers`, `thinking.budget_tokens` / `display`, and any unknown field.
    """
    quirks, model = target.quirks, target.model_id
    switch = _thinking_switch(body.get("thinking"))
    thinking_on = quirks.thinks_always(model) or switch != "disabled"
    plan = _Plan(
        text_only=quirks.is_text_only(model),
        replay_reasoning=quirks.replay_reasoning and thinking_on,
    )
    out: Json = {"model": model}
    out["messages"] = _openai_messages(body, plan)
    out.update(_max_tokens(body.get("max_tokens"), quirks, model))
    out.update(_stop(body.get("stop_sequences"), quirks.max_stop_sequences))
    if not quirks.has_fixed_sampling(model):
        out.update({k: body[k] for k in ("temperature", "top_p") if body.get(k) is not None})
    if body.get("stream") is True:
        out["stream"] = True
        if quirks.stream_usage:
            out["stream_options"] = {"include_usage": True}
    force_auto = quirks.thinking_needs_auto_tool_choice and thinking_on
    out.update(_openai_tools(body.get("tools"), body.get("tool_choice"), force_auto))
    out.update(_reasoning_controls(body, quirks, model, switch))
    out.update(_user_fields(body.get("metadata"), quirks.prompt_cache_key))
    for name in quirks.drop_fields:
        out.pop(name, None)
    return out


def _thinking_switch(thinking: Any) -> str | None:
    """The client's thinking switch: "enabled", "disabled", or None when it did not set one."""
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind in ("enabled", "adaptive"):
        return "enabled"
    return "disabled" if kind == "disabled" else None


def _max_tokens(value: Any, quirks: Quirks, model: str) -> Json:
    if not isinstance(value, int) or isinstance(value, bool):
        return {}
    limit = quirks.max_tokens_for(model)
    return {quirks.max_tokens_field: min(value, limit) if limit else value}


def _stop(sequences: Any, most: int | None) -> Json:
    stops = [s for s in sequences or () if isinstance(s, str) and s]
    # Over-long lists are cut rather than rejected: the first sequences still stop generation.
    return {"stop": stops[:most] if most else stops} if stops else {}


# --- messages -------------------------------------------------------------------------------


def _openai_messages(body: Json, plan: _Plan) -> list[Json]:
    out: list[Json] = []
    system = _system_text(body.get("system"))
    if system:
        out.append({"role": "system", "content": system})
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        role, content = message.get("role"), message.get("content")
        if role == "system":
            out += _system_message(content)
        elif role == "user":
            out += _user_turn(content, plan)
        elif role == "assistant":
            out += _assistant_turn(content, plan)
    return _tool_runs_unbroken(out)


def _system_text(system: Any) -> str:
    """System text without Claude Code's per-request billing line (it defeats prefix caching)."""
    if isinstance(system, str):
        return system.partition("\n")[2].lstrip("\n") if system.startswith(BILLING_PREFIX) else system
    texts = []
    for block in _blocks(system):
        if block.get("type") == "mid_conv_system":
            texts.append(_system_text(block.get("content")))
        elif block.get("type") == "text" and not str(block.get("text", "")).startswith(BILLING_PREFIX):
            texts.append(block.get("text", ""))
    return JOIN.join(t for t in texts if t)


def _system_message(content: Any) -> list[Json]:
    text = _system_text(content)
    return [{"role": "system", "content": text}] if text else []


def _blocks(content: Any) -> list[Json]:
    """The content blocks of a message (a string is one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content or () if isinstance(b, dict)] if isinstance(content, list) else []


def _user_turn(content: Any, plan: _Plan) -> list[Json]:
    """Tool results first (one `tool` message each, in order), then the rest of the turn.

    OpenAI requires `tool` messages to follow the assistant's `tool_calls` directly, so text
    between or before results must not split them (never tool, user, tool). `mid_conv_system`
    blocks become system messages where they stand among the remaining blocks.
    """
    tools: list[Json] = []
    moved: list[Json] = []  # images from tool results, for the user message after them
    rest: list[Json] = []  # user and system messages, in order
    parts: list[Json] = []
    for block in _blocks(content):
        kind = block.get("type")
        if kind == "tool_result":
            tools.append(_tool_message(block, plan, moved))
        elif kind == "mid_conv_system":
            rest += _user_message(parts) + _system_message(block.get("content"))
            parts = []
        else:
            parts += _user_parts(block, plan)
    rest += _user_message(parts)
    if moved:
        if rest and rest[0]["role"] == "user":
            rest[0] = _user_message(moved + _as_parts(rest[0]["content"]))[0]
        else:
            rest.insert(0, _user_message(moved)[0])
    return tools + rest


def _as_parts(content: str | list[Json]) -> list[Json]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _user_message(parts: list[Json]) -> list[Json]:
    """One user message (content a plain string when it is all text), or none when empty."""
    if not parts:
        return []
    if all(p["type"] == "text" for p in parts):
        return [{"role": "user", "content": JOIN.join(p["text"] for p in parts)}]
    return [{"role": "user", "content": parts}]


def _user_parts(block: Json, plan: _Plan) -> list[Json]:
    kind = block.get("type")
    if kind == "image":
        return [_image_part(block, plan.text_only)]
    text = _block_text(block)
    return [{"type": "text", "text": text}] if text else []


def _block_text(block: Json) -> str:
    """The text a non-image block carries (thinking and unknown non-text blocks carry none)."""
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text") or "")
    if kind == "document":
        return _document_text(block)
    if kind == "search_result":
        body = JOIN.join(_block_text(b) for b in _blocks(block.get("content")))
        return JOIN.join(t for t in (block.get("title"), body) if t)
    return ""


def _document_text(block: Json) -> str:
    """Plain-text documents become their text; PDFs and URLs a short placeholder."""
    source = block.get("source") if isinstance(block.get("source"), dict) else {}
    title = block.get("title") or ""
    kind = source.get("type")
    if kind == "text":
        text = str(source.get("data") or "")
    elif kind == "content":
        text = JOIN.join(_block_text(b) for b in _blocks(source.get("content")))
    else:
        where = f" ({source['url']})" if kind == "url" and source.get("url") else ""
        name = f" '{title}'" if title else ""
        return f"[document{name}{where} omitted: this model cannot read PDF files]"
    return JOIN.join(t for t in (title, text) if t)


def _image_part(block: Json, text_only: bool) -> Json:
    source = block.get("source") if isinstance(block.get("source"), dict) else {}
    url = ""
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    elif source.get("type") == "url":
        url = str(source.get("url") or "")
    if text_only or not url:
        return {"type": "text", "text": IMAGE_PLACEHOLDER}
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_message(block: Json, plan: _Plan, moved: list[Json]) -> Json:
    """A `tool` message; images go to `moved` (tool messages are text-only on most upstreams)."""
    texts = []
    for item in _blocks(block.get("content")):
        if item.get("type") != "image":
            texts.append(_block_text(item))
        elif plan.text_only:
            texts.append(IMAGE_PLACEHOLDER)
        else:
            moved.append(_image_part(item, False))
            texts.append(IMAGE_MOVED)
    text = JOIN.join(t for t in texts if t)
    if block.get("is_error"):
        text = TOOL_ERROR_PREFIX + (text or "the tool failed")
    tool_id = to_upstream_id(str(block.get("tool_use_id") or ""))
    return {"role": "tool", "tool_call_id": tool_id, "content": text or EMPTY_TOOL_RESULT}


def _assistant_turn(content: Any, plan: _Plan) -> list[Json]:
    """One assistant message: text joined, tool calls in order, thinking as `reasoning_content`.

    With `replay_reasoning`, a tool-call turn without any thinking text (history from another
    model) still gets a placeholder, since DeepSeek and Kimi reject tool-call turns without one.
    """
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[Json] = []
    systems: list[Json] = []
    for block in _blocks(content):
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "tool_use":
            calls.append(_tool_call(block))
        elif kind == "thinking":
            reasoning.append(str(block.get("thinking") or ""))
        elif kind == "mid_conv_system":
            systems += _system_message(block.get("content"))
    text = JOIN.join(t for t in texts if t)
    if not text and not calls:
        return systems
    message: Json = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    if plan.replay_reasoning:
        thought = JOIN.join(r for r in reasoning if r)
        if thought or calls:
            message["reasoning_content"] = thought or REASONING_PLACEHOLDER
    # System text inside an assistant turn goes before it, never between calls and results.
    return systems + [message]


def _tool_call(block: Json) -> Json:
    arguments = json.dumps(block.get("input") if block.get("input") is not None else {}, ensure_ascii=False)
    return {
        "id": to_upstream_id(str(block.get("id") or "")),
        "type": "function",
        "function": {"name": block.get("name", ""), "arguments": arguments},
    }


def _tool_runs_unbroken(messages: list[Json]) -> list[Json]:
    """Move system messages that would split an assistant's tool calls from their results.

    A mid-conversation system message placed between a tool-call turn and its results is held
    back until the run of `tool` messages ends.
    """
    out: list[Json] = []
    held: list[Json] = []
    in_run = False
    for message in messages:
        role = message["role"]
        if role == "system" and in_run:
            held.append(message)
            continue
        if role != "tool":
            out += held
            held = []
        out.append(message)
        in_run = role == "tool" or (role == "assistant" and bool(message.get("tool_calls")))
    return out + held


# --- tools ----------------------------------------------------------------------------------


def _openai_tools(tools: Any, choice: Any, force_auto: bool) -> Json:
    """Function tools from custom tools (`type` absent or "custom"); server tools are dropped.

    `tool_choice` and `parallel_tool_calls` are only sent with at least one tool (OpenAI rejects
    them otherwise). A forced choice becomes "auto" when `force_auto` (Kimi with thinking on) or
    when it names a tool that was dropped.
    """
    functions = [_function_tool(t) for t in tools or () if isinstance(t, dict) and t.get("type") in (None, "custom")]
    if not functions:
        return {}
    out: Json = {"tools": functions}
    if isinstance(choice, dict):
        names = {f["function"]["name"] for f in functions}
        mapped = _openai_tool_choice(choice, names, force_auto)
        if mapped is not None:
            out["tool_choice"] = mapped
        if choice.get("disable_parallel_tool_use") is True:
            out["parallel_tool_calls"] = False
    return out


def _function_tool(tool: Json) -> Json:
    function: Json = {"name": tool.get("name", "")}
    if tool.get("description"):
        function["description"] = tool["description"]
    function["parameters"] = _parameters(tool.get("input_schema"))
    return {"type": "function", "function": function}


def _parameters(schema: Any) -> Json:
    """The input schema without `$schema`: metadata some OpenAI-compatible upstreams reject."""
    if not isinstance(schema, dict):
        return {"type": "object", "properties": {}}
    return {k: v for k, v in schema.items() if k != "$schema"}


def _openai_tool_choice(choice: Json, names: set[str], force_auto: bool) -> str | Json | None:
    kind = choice.get("type")
    if kind in ("auto", "none"):
        return kind
    if kind == "any":
        return "auto" if force_auto else "required"
    if kind == "tool":
        name = choice.get("name")
        if force_auto or name not in names:
            return "auto"
        return {"type": "function", "function": {"name": name}}
    return None


# --- reasoning, user ------------------------------------------------------------------------

# DeepSeek takes high|max only.
_DEEPSEEK_EFFORT = {"low": "high", "medium": "high", "high": "high", "xhigh": "max", "max": "max"}
# OpenAI: xhigh/max become "high", the highest level every reasoning model accepts.
_OPENAI_EFFORT = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}


def _reasoning_controls(body: Json, quirks: Quirks, model: str, switch: str | None) -> Json:
    """`thinking` / `output_config.effort` as the upstream's own reasoning controls.

    A switch is sent only when the client set one (an absent `thinking` leaves the upstream's
    default, which is "on" for DeepSeek v4 and Kimi) and only to models that can switch.
    Kimi gets no `reasoning_effort`: K2.x models have none and some hosts reject it alongside
    `thinking`. `budget_tokens` has no equivalent; for OpenAI it picks an effort when no explicit
    effort is given.
    """
    config = body.get("output_config")
    effort = config.get("effort") if isinstance(config, dict) else None
    out: Json = {}
    if quirks.reasoning in ("deepseek", "kimi") and switch and not quirks.thinks_always(model):
        out["thinking"] = {"type": switch}
    if switch == "disabled" and not quirks.thinks_always(model):
        return out
    if quirks.reasoning == "deepseek" and effort in _DEEPSEEK_EFFORT:
        out["reasoning_effort"] = _DEEPSEEK_EFFORT[effort]
    elif quirks.reasoning == "openai" and quirks.takes_reasoning_effort(model):
        level = _OPENAI_EFFORT.get(effort) if effort else _budget_effort(body.get("thinking"))
        if level:
            out["reasoning_effort"] = level
    return out


def _budget_effort(thinking: Any) -> str | None:
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return None
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int):
        return None
    return "low" if budget < 4096 else "medium" if budget < 16384 else "high"


def _user_fields(metadata: Any, cache_key: bool) -> Json:
    """`metadata.user_id` -> `user`, and `prompt_cache_key` from its session id where taken.

    Claude Code's user_id is a long JSON string; values over 64 characters are replaced by a
    stable hash so upstreams with a length limit accept them.
    """
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    if not isinstance(user_id, str) or not user_id:
        return {}
    out: Json = {"user": _short_id(user_id)}
    if cache_key:
        out["prompt_cache_key"] = _short_id(_session_id(user_id))
    return out


def _short_id(value: str) -> str:
    if len(value) <= 64:
        return value
    return "u_" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]


def _session_id(user_id: str) -> str:
    """The session part of Claude Code's user_id (JSON, or `user_…_account_…_session_<id>`)."""
    try:
        parsed = json.loads(user_id)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("session_id"), str) and parsed["session_id"]:
        return parsed["session_id"]
    _, found, session = user_id.rpartition("_session_")
    return session if found and session else user_id


# --------------------------------------------------------------------------------------------
# OpenAI Chat Completions -> Anthropic Messages
# --------------------------------------------------------------------------------------------

_MEDIA_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}
# Thinking budgets for `reasoning_effort`; "none"/"minimal" mean no thinking.
_EFFORT_BUDGET = {"low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768, "max": 32768}
_MIN_BUDGET = 1024  # Anthropic's smallest budget_tokens


def openai_to_anthropic(body: Json, target: Target, default_max_tokens: int = 8192) -> Json:
    """A Messages request equivalent to the Chat Completions request `body`.

    * system / developer messages, wherever they stand, are joined into the top-level `system`
      (mid-list system turns need a beta the client cannot have asked for).
    * Tool-call arguments that are not a JSON object are kept as `{"_raw": "<arguments>"}`, so
      the call and its result stay paired and the model can see what it sent.
    * Assistant reasoning becomes thinking blocks only with a genuine Anthropic signature, taken
      from `thinking_blocks` (LiteLLM), `reasoning_details` (OpenRouter) or `reasoning_content` +
      `reasoning_signature`; unsigned or gateway-signed reasoning is dropped (Anthropic rejects it).
    * `reasoning_effort` -> `thinking: enabled` with a budget (see `_EFFORT_BUDGET`), unless the
      budget cannot fit under `max_tokens`, `tool_choice` forces a tool, or the last assistant
      turn calls tools without a thinking block (Anthropic rejects each with thinking on).
    * `response_format` json_schema -> `output_config.format`.
    * Dropped: `n`, `logprobs`, `top_logprobs`, `seed`, `presence_penalty`, `frequency_penalty`,
      `logit_bias`, `stream_options`, `store`, OpenAI `metadata`, `modalities`, `audio`,
      `prediction`, `service_tier`, `web_search_options`, `prompt_cache_key`, `verbosity`,
      `response_format` of type text / json_object, `function.strict`, custom (grammar) tools, the
      legacy `functions` / `function_call` API and `function` role messages.
    """
    system, messages = _anthropic_messages(body.get("messages") or ())
    out: Json = {"model": target.model_id}
    if system:
        out["system"] = system
    out["messages"] = messages
    out["max_tokens"] = _anthropic_max_tokens(body, target, default_max_tokens)
    stops = body.get("stop")
    stops = [stops] if isinstance(stops, str) else stops
    # Anthropic rejects whitespace-only stop sequences.
    stops = [s for s in stops or () if isinstance(s, str) and s.strip()]
    if stops:
        out["stop_sequences"] = stops
    tools = _anthropic_tools(body.get("tools"))
    choice = _anthropic_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls")) if tools else None
    thinking = _thinking_for_effort(body.get("reasoning_effort"), out["max_tokens"], choice, messages)
    if not thinking:
        out.update(_anthropic_sampling(body))
    if body.get("stream") is True:
        out["stream"] = True
    if tools:
        out["tools"] = tools
    if choice:
        out["tool_choice"] = choice
    if thinking:
        out["thinking"] = thinking
    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    out.update(_output_format(body.get("response_format")))
    return out


def _anthropic_max_tokens(body: Json, target: Target, default: int) -> int:
    value = body.get("max_completion_tokens") or body.get("max_tokens")
    value = value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default
    limit = target.quirks.max_tokens_for(target.model_id)
    return min(value, limit) if limit else value


def _anthropic_sampling(body: Json) -> Json:
    """Temperature clamped to Anthropic's 0..1; top_p only without temperature (newer Claude
    models reject both together). Neither is sent with thinking on (Anthropic requires defaults)."""
    temperature = body.get("temperature")
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
        return {"temperature": min(max(temperature, 0), 1)}
    top_p = body.get("top_p")
    return {"top_p": top_p} if isinstance(top_p, (int, float)) and not isinstance(top_p, bool) else {}


def _anthropic_messages(messages: Any) -> tuple[str, list[Json]]:
    system: list[str] = []
    out: list[Json] = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(_openai_text(message.get("content")))
            continue
        if role == "user":
            blocks = _content_blocks(message.get("content"))
        elif role == "assistant":
            blocks = _assistant_blocks(message)
        elif role == "tool":
            role, blocks = "user", [_tool_result(message)]
        else:
            continue
        _append(out, role, blocks)
    return JOIN.join(t for t in system if t), out


def _append(messages: list[Json], role: str, blocks: list[Json]) -> None:
    """Add a turn, merging it into the previous one of the same role (consecutive tool
    messages become ONE user turn of tool_result blocks, which keeps parallel tool use)."""
    if not blocks:
        return
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"].extend(blocks)
    else:
        messages.append({"role": role, "content": list(blocks)})


def _openai_text(content: Any) -> str:
    return JOIN.join(b["text"] for b in _content_blocks(content) if b["type"] == "text")


def _content_blocks(content: Any) -> list[Json]:
    """User (and tool) content parts as Anthropic blocks; whitespace-only text is skipped
    because Anthropic rejects it."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content.strip() else []
    blocks: list[Json] = []
    parts = content if isinstance(content, list) else ()
    for part in parts:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in ("text", "refusal"):
            text = str(part.get("text") or part.get("refusal") or "")
            blocks += [{"type": "text", "text": text}] if text.strip() else []
        elif kind == "image_url":
            blocks.append(_image_block(part.get("image_url")))
        elif kind == "file":
            blocks.append(_file_block(part.get("file")))
        elif kind == "input_audio":
            blocks.append({"type": "text", "text": "[audio omitted: this model cannot hear audio]"})
    return blocks


def _data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 payload) of a base64 `data:` URL."""
    head, comma, data = url.partition(",")
    if not url.startswith("data:") or not comma or not head.endswith(";base64"):
        return None
    return head[len("data:") : -len(";base64")].split(";")[0].lower(), data


def _image_block(image: Any) -> Json:
    url = image.get("url") if isinstance(image, dict) else image
    url = url if isinstance(url, str) else ""
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    media_type, data = _data_url(url) or ("", "")
    media_type = "image/jpeg" if media_type == "image/jpg" else media_type
    if media_type in _MEDIA_TYPES:
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "text", "text": "[image omitted: unsupported image format]"}


def _file_block(file: Any) -> Json:
    """PDF and plain-text file parts as document blocks; anything else as a placeholder."""
    file = file if isinstance(file, dict) else {}
    name = file.get("filename")
    parsed = _data_url(str(file.get("file_data") or ""))
    block: Json | None = None
    if parsed and parsed[0] == "application/pdf":
        block = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": parsed[1]}}
    elif parsed and parsed[0] == "text/plain":
        try:
            text = base64.b64decode(parsed[1]).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            text = ""
        if text.strip():
            block = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": text}}
    if block is None:
        return {"type": "text", "text": f"[file {name or file.get('file_id') or ''} omitted: unsupported file]"}
    if isinstance(name, str) and name:
        block["title"] = name
    return block


def _assistant_blocks(message: Json) -> list[Json]:
    blocks = _signed_thinking(message)
    content = message.get("content")
    text_blocks = _content_blocks(content if isinstance(content, (str, list)) else "")
    blocks += [b for b in text_blocks if b["type"] == "text"]
    if not text_blocks and isinstance(message.get("refusal"), str) and message["refusal"].strip():
        blocks.append({"type": "text", "text": message["refusal"]})
    for call in message.get("tool_calls") or ():
        if isinstance(call, dict) and isinstance(call.get("function"), dict):
            function = call["function"]
            blocks.append(
                {
                    "type": "tool_use",
                    "id": to_client_id(str(call.get("id") or "")),
                    "name": function.get("name", ""),
                    "input": _parse_arguments(function.get("arguments")),
                }
            )
    return blocks


def _genuine(signature: Any) -> bool:
    return isinstance(signature, str) and bool(signature) and not is_gateway_signature(signature)


def _signed_thinking(message: Json) -> list[Json]:
    """Thinking blocks carried by an OpenAI-shaped assistant message, genuine signatures only."""
    if isinstance(message.get("thinking_blocks"), list):
        items = [b for b in message["thinking_blocks"] if isinstance(b, dict)]
        return [
            {"type": "thinking", "thinking": b.get("thinking", ""), "signature": b["signature"]}
            if b.get("type") == "thinking"
            else {"type": "redacted_thinking", "data": b["data"]}
            for b in items
            if (b.get("type") == "thinking" and _genuine(b.get("signature")))
            or (b.get("type") == "redacted_thinking" and isinstance(b.get("data"), str) and b["data"])
        ]
    if isinstance(message.get("reasoning_details"), list):
        blocks = []
        for d in message["reasoning_details"]:
            if not isinstance(d, dict):
                continue
            if d.get("type") == "reasoning.text" and _genuine(d.get("signature")):
                blocks.append({"type": "thinking", "thinking": d.get("text", ""), "signature": d["signature"]})
            elif d.get("type") == "reasoning.encrypted" and isinstance(d.get("data"), str) and d["data"]:
                blocks.append({"type": "redacted_thinking", "data": d["data"]})
        return blocks
    reasoning, signature = message.get("reasoning_content"), message.get("reasoning_signature")
    if isinstance(reasoning, str) and _genuine(signature):
        return [{"type": "thinking", "thinking": reasoning, "signature": signature}]
    return []


def _parse_arguments(arguments: Any) -> Json:
    """Tool-call arguments as an object: "" -> {}, anything not a JSON object -> {"_raw": ...}."""
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        parsed = json.loads(arguments)
    except ValueError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"_raw": arguments}


def _tool_result(message: Json) -> Json:
    block: Json = {"type": "tool_result", "tool_use_id": to_client_id(str(message.get("tool_call_id") or ""))}
    content = message.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    else:
        blocks = [b for b in _content_blocks(content) if b["type"] in ("text", "image", "document")]
        if blocks:
            block["content"] = blocks
    return block


def _anthropic_tools(tools: Any) -> list[Json]:
    out = []
    for tool in tools or ():
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(function, dict) or not function.get("name"):
            continue
        entry: Json = {"name": function["name"]}
        if function.get("description"):
            entry["description"] = function["description"]
        schema = function.get("parameters")
        schema = schema if isinstance(schema, dict) and schema else {"properties": {}}
        entry["input_schema"] = {"type": "object", **schema}
        out.append(entry)
    return out


def _anthropic_tool_choice(choice: Any, parallel: Any) -> Json | None:
    mapped: Json | None = None
    if choice in ("auto", "none"):
        mapped = {"type": choice}
    elif choice == "required":
        mapped = {"type": "any"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict) and choice["function"].get("name"):
        mapped = {"type": "tool", "name": choice["function"]["name"]}
    if parallel is False:
        mapped = mapped or {"type": "auto"}
        if mapped["type"] != "none":  # "none" takes no disable_parallel_tool_use
            mapped["disable_parallel_tool_use"] = True
    return mapped


def _thinking_for_effort(effort: Any, max_tokens: int, choice: Json | None, messages: list[Json]) -> Json | None:
    """Thinking for `reasoning_effort`, unless Anthropic would reject it: with a forced tool
    choice, a budget that does not fit under max_tokens, or a tool loop whose last assistant turn
    has no thinking block (OpenAI-shaped history rarely carries signed thinking)."""
    if effort not in _EFFORT_BUDGET or (choice and choice["type"] in ("any", "tool")):
        return None
    if _tool_turn_without_thinking(messages):
        return None
    budget = min(_EFFORT_BUDGET[effort], max_tokens - 1)
    return {"type": "enabled", "budget_tokens": budget} if budget >= _MIN_BUDGET else None


def _output_format(response_format: Any) -> Json:
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return {}
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        return {}
    return {"output_config": {"format": {"type": "json_schema", "schema": schema}}}


# --------------------------------------------------------------------------------------------
# Anthropic -> Anthropic
# --------------------------------------------------------------------------------------------


def _unreplayable(block: Any) -> bool:
    """A thinking block Anthropic would reject: gateway-signed, or with no signature at all."""
    if not isinstance(block, dict) or block.get("type") != "thinking":
        return False
    signature = block.get("signature")
    return is_gateway_signature(signature) or not signature


def _is_assistant(message: Any) -> bool:
    return isinstance(message, dict) and message.get("role") == "assistant"


def _tool_turn_without_thinking(messages: list[Any]) -> bool:
    """Whether the last assistant turn calls tools but does not start with a thinking block.

    With thinking on, Anthropic rejects that ("a final `assistant` message must start with a
    thinking block"); the only fix is to leave thinking off for the request.
    """
    last = next((m for m in reversed(messages) if _is_assistant(m)), None)
    content = last.get("content") if last else None
    if not isinstance(content, list) or not content:
        return False
    calls = any(isinstance(b, dict) and b.get("type") == "tool_use" for b in content)
    first = content[0].get("type") if isinstance(content[0], dict) else None
    return calls and first not in ("thinking", "redacted_thinking")


def strip_gateway_thinking(body: Json) -> Json:
    """`body` without the thinking blocks a genuine Anthropic upstream would reject.

    Gateway-signed blocks (made from another upstream's reasoning) and unsigned ones are removed
    from assistant turns; every other block, message and field is left as the same object, and
    when nothing needs removing `body` itself is returned, so the caller can forward the
    original bytes. An assistant turn left empty is dropped. When that leaves the last tool-call
    turn without a leading thinking block while thinking is on, thinking is switched off for
    this request (see `_tool_turn_without_thinking`).
    """
    messages = body.get("messages")
    if not isinstance(messages, list):
        return body
    kept: list[Any] = []
    changed = False
    for message in messages:
        content = message.get("content") if _is_assistant(message) else None
        if isinstance(content, list) and any(map(_unreplayable, content)):
            changed = True
            message = {**message, "content": [b for b in content if not _unreplayable(b)]}
            if not message["content"]:
                continue
        kept.append(message)
    if not changed:
        return body
    out: Json = {**body, "messages": kept}
    if _thinking_switch(body.get("thinking")) == "enabled" and _tool_turn_without_thinking(kept):
        out["thinking"] = {"type": "disabled"}
    return out
