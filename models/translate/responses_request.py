"""OpenAI Responses request -> OpenAI Chat Completions request, as pure functions of the parsed body.

* `responses_to_chat`: the Chat body for an OpenAI-compatible upstream, shaped by its `Quirks`, and the
  `ToolTable` the response translators need to turn upstream function calls back into the client's
  `function_call` (with its `namespace`) or `custom_tool_call` items.
* `check_responses_request`: shape problems of a Responses body as `path: message` strings.

The mapping:

* `instructions` -> the first system message; `input` as a string -> one user message.
* Message items (with or without `type`, `id` and `status` ignored): roles user / assistant / system /
  developer (`developer` -> `system` except on OpenAI itself). `input_text` / `output_text` -> text,
  `input_image` -> `image_url` part (a placeholder for text-only models), `input_file` -> a Chat file part
  on OpenAI, its text when it is plain text, otherwise a placeholder.
* `function_call` / `custom_tool_call` -> `tool_calls` of ONE assistant message per run of calls, joined to
  the assistant text just before them; a custom call's `input` becomes the arguments `{"input": ...}`.
* `function_call_output` / `custom_tool_call_output` -> `tool` messages keyed by `call_id`, placed right
  after their call (an output without a call is dropped, a call without an output gets a placeholder: Chat
  upstreams reject both); images in array outputs go to a user message after the tool run.
* `reasoning` items whose `encrypted_content` the gateway minted (`seal_reasoning`) -> `reasoning_content`
  of the next assistant message, for upstreams that want reasoning replayed, or, for an Anthropic upstream,
  `thinking_blocks` with the signature Anthropic gave the block; foreign tokens are dropped,
  a token with the gateway's prefix that fails verification is refused (`ResponsesInputError`).
* `additional_tools` items add their tools; hosted items (`web_search_call`, `tool_search_*`,
  `compaction`, `item_reference`, `local_shell_call`, ...) are dropped.
* Tools: `function` (flat) -> nested Chat function; `custom` -> a function of one string `input` (the
  grammar goes into the description); `namespace` -> its functions, renamed `namespace__name` through the
  `ToolTable`; hosted tools are dropped. `tool_choice` and `parallel_tool_calls` follow the tools.
* `max_output_tokens` -> the upstream's max-tokens field (clamped; never a default), `temperature` /
  `top_p` unless the model's sampling is fixed, `text.format` -> nested `response_format`,
  `reasoning.effort` -> the upstream's reasoning controls (as for Messages requests; `none` switches
  thinking off, `minimal` counts as `low`), `user` / `safety_identifier` -> `user`, `prompt_cache_key`
  where the upstream takes it.
* Not forwarded: `store`, `previous_response_id`, `include`, `metadata`, `client_metadata`,
  `service_tier`, `truncation`, `text.verbosity`, `stream_options`, `reasoning.summary`, `top_logprobs`,
  `max_tool_calls` and any unknown field (the body is built from scratch).
* Refused: `background: true`, `conversation`, `prompt` (no equivalent on a translated upstream).

`responses_passthrough` is the request for an upstream that serves the Responses API itself: the body
as the client sent it, but for the model and what only this gateway can read.

Nothing here does I/O; the input body is never mutated.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from models.providers import Quirks
from models.translate.request import (
    EMPTY_TOOL_RESULT,
    IMAGE_MOVED,
    IMAGE_PLACEHOLDER,
    JOIN,
    REASONING_PLACEHOLDER,
    Json,
    Target,
    _max_tokens,
    _parameters,
    _reasoning_controls,
    _short_id,
)
from models.translate.responses_response import is_gateway_id
from models.translate.responses_tools import CUSTOM_INPUT, ToolSpec, ToolTable
from models.translate.thinking import is_sealed_reasoning, open_reasoning
from models.validate import _is_int, _kind

_log = logging.getLogger("junction.translate")

# A call the history never answered (e.g. an interrupted turn): Chat upstreams need a result for it.
MISSING_TOOL_RESULT = "[no result: the tool call did not complete]"
IMAGE_NOT_USER = "[image omitted: images are only read in user messages]"
_CALLS = ("function_call", "custom_tool_call")
_OUTPUTS = ("function_call_output", "custom_tool_call_output")
_TEXT_PARTS = ("input_text", "output_text", "text", "summary_text")
_DETAILS = ("auto", "low", "high")  # what Chat's image_url.detail takes (Responses adds e.g. "original")
# Responses efforts in the Messages vocabulary `_reasoning_controls` reads; "minimal" is the lowest
# level every reasoning upstream has, "none" switches thinking off.
_EFFORT = {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh", "max": "max"}


class ResponsesInputError(ValueError):
    """A Responses request the gateway understands but cannot honour (HTTP 400, `param` names the field)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(frozen=True)
class _Plan:
    """Per-request decisions that several converters need."""

    text_only: bool
    replay_reasoning: bool
    signed_thinking: bool  # an Anthropic upstream: reasoning goes back as its signed thinking blocks
    developer_role: str  # what `developer` messages become upstream
    file_parts: bool  # the upstream reads Chat `file` parts (OpenAI)


def responses_to_chat(body: Json, target: Target, anthropic: bool = False) -> tuple[Json, ToolTable]:
    """A Chat Completions request equivalent to the Responses request `body`, and its tool table.
    `anthropic`: the body goes on to a Messages upstream, so reasoning is carried as signed
    `thinking_blocks` (which the Chat -> Messages translator turns back into thinking blocks)."""
    _refuse_unsupported(body)
    quirks, model = target.quirks, target.model_id
    switch, effort = _reasoning_switch(body.get("reasoning"))
    thinking_on = quirks.thinks_always(model) or switch != "disabled"
    plan = _Plan(
        text_only=quirks.is_text_only(model),
        replay_reasoning=quirks.replay_reasoning and thinking_on,
        signed_thinking=anthropic,
        developer_role="developer" if target.prefix == "openai" else "system",
        file_parts=target.prefix == "openai",
    )
    items = _items(body.get("input"))
    table = ToolTable()
    # Tools are registered before the history so their upstream names never take a clash suffix.
    tools = _chat_tools(_client_tools(body, items), table)
    out: Json = {"model": model, "messages": _messages(body.get("instructions"), items, plan, table)}
    out.update(_max_tokens(body.get("max_output_tokens"), quirks, model))
    if not quirks.has_fixed_sampling(model):
        out.update({k: body[k] for k in ("temperature", "top_p") if _is_number(body.get(k))})
    if isinstance(body.get("stream"), bool):
        out["stream"] = body["stream"]
        if body["stream"] and quirks.stream_usage:
            out["stream_options"] = {"include_usage": True}
    force_auto = quirks.thinking_needs_auto_tool_choice and thinking_on
    out.update(_tool_fields(tools, body.get("tool_choice"), body.get("parallel_tool_calls"), force_auto))
    out.update(_response_format(body.get("text")))
    out.update(_reasoning_controls({"output_config": {"effort": effort}}, quirks, model, switch))
    if anthropic and effort:
        # Read by the Chat -> Messages translator: thinking with a budget for this effort (kept on
        # tool-loop turns because the signed thinking blocks come back above).
        out["reasoning_effort"] = effort
    out.update(_user_fields(body, quirks))
    for name in quirks.drop_fields:
        out.pop(name, None)
    return out, table


def responses_passthrough(body: Json, model_id: str, drop: frozenset[str] = frozenset()) -> Json:
    """The Responses request for a native Responses upstream: every field as sent (hosted tools,
    `include`, `store`...), `model` set to the upstream's id, the `drop` fields removed; reasoning
    items this gateway sealed are dropped (another provider's reasoning, unreadable there) and the
    ids it minted for items of translated answers are removed (such an upstream refuses ids it never
    issued)."""
    out = {k: v for k, v in body.items() if k not in drop}
    out["model"] = model_id
    items = body.get("input")
    if not isinstance(items, list):
        return out
    kept: list[Any] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            kept.append(item)
            continue
        content = item.get("encrypted_content")
        gateway_made = is_gateway_id(item.get("id"))
        if item.get("type") == "reasoning" and (gateway_made or is_sealed_reasoning(content)):
            _log.debug("responses: input[%d]: reasoning from a translated answer dropped for a native upstream", index)
            continue
        kept.append({k: v for k, v in item.items() if k != "id"} if gateway_made else item)
    out["input"] = kept
    return out


def _refuse_unsupported(body: Json) -> None:
    if body.get("background") is True:
        raise ResponsesInputError("background mode is not supported for this model", "background")
    for name in ("conversation", "prompt"):
        if body.get(name) is not None:
            raise ResponsesInputError(f"'{name}' is not supported for this model; send the input instead", name)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _reasoning_switch(reasoning: Any) -> tuple[str | None, str | None]:
    """(thinking switch, Messages-style effort) for `reasoning`; no effort leaves the upstream default."""
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
    if effort == "none":
        return "disabled", None
    if effort in _EFFORT:
        return "enabled", _EFFORT[effort]
    return None, None


def _user_fields(body: Json, quirks: Quirks) -> Json:
    """`safety_identifier` (or the older `user`) -> `user`; `prompt_cache_key` where the upstream takes it.
    Values over 64 characters become a stable hash, as for Messages clients."""
    out: Json = {}
    user = body.get("safety_identifier") or body.get("user")
    if isinstance(user, str) and user:
        out["user"] = _short_id(user)
    key = body.get("prompt_cache_key")
    if quirks.prompt_cache_key and isinstance(key, str) and key:
        out["prompt_cache_key"] = _short_id(key)
    return out


def _response_format(text: Any) -> Json:
    """`text.format` -> Chat `response_format`, whose json_schema is nested under `json_schema`."""
    spec = text.get("format") if isinstance(text, dict) else None
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind == "json_object":
        return {"response_format": {"type": "json_object"}}
    if kind != "json_schema" or not isinstance(spec.get("schema"), dict):
        return {}
    schema: Json = {"name": spec.get("name") or "response", "schema": spec["schema"]}
    if isinstance(spec.get("description"), str):
        schema["description"] = spec["description"]
    if isinstance(spec.get("strict"), bool):
        schema["strict"] = spec["strict"]
    return {"response_format": {"type": "json_schema", "json_schema": schema}}


# --- tools ----------------------------------------------------------------------------------------


def _items(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    return value if isinstance(value, list) else []


def _client_tools(body: Json, items: list[Any]) -> list[Json]:
    """The request's tools, then those of `additional_tools` items (Codex code mode sends them there)."""
    tools = [t for t in body.get("tools") or () if isinstance(t, dict)]
    for item in items:
        if isinstance(item, dict) and item.get("type") == "additional_tools":
            tools += [t for t in item.get("tools") or () if isinstance(t, dict)]
    return tools


@dataclass
class _Tool:
    """One upstream function and the client tool it stands for (for `allowed_tools` filtering)."""

    spec: ToolSpec
    chat: Json


def _chat_tools(tools: list[Json], table: ToolTable) -> list[_Tool]:
    out: list[_Tool] = []
    seen: set[str] = set()
    for tool, namespace in _flattened(tools):
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            continue
        spec = ToolSpec("custom" if tool.get("type") == "custom" else "function", name, namespace)
        upstream = table.add(spec)
        if upstream in seen:  # the same tool listed twice (e.g. also in `additional_tools`)
            continue
        seen.add(upstream)
        out.append(
            _Tool(spec, _custom_tool(tool, upstream) if spec.kind == "custom" else _function_tool(tool, upstream))
        )
    return out


def _flattened(tools: list[Json]) -> list[tuple[Json, str | None]]:
    """Function and custom tools with their namespace; hosted tools are dropped (no Chat equivalent)."""
    out: list[tuple[Json, str | None]] = []
    for tool in tools:
        kind = tool.get("type")
        if kind in ("function", "custom"):
            out.append((tool, None))
        elif kind == "namespace" and isinstance(tool.get("name"), str):
            members = [
                t for t in tool.get("tools") or () if isinstance(t, dict) and t.get("type") in ("function", "custom")
            ]
            out += [(t, tool["name"]) for t in members]
        else:
            _log.debug("responses: dropped hosted tool %r", kind)
    return out


def _function_tool(tool: Json, upstream: str) -> Json:
    function: Json = {"name": upstream}
    if isinstance(tool.get("description"), str) and tool["description"]:
        function["description"] = tool["description"]
    function["parameters"] = _parameters(tool.get("parameters"))
    if tool.get("strict") is True:  # Chat's default is non-strict; only an explicit true is sent
        function["strict"] = True
    return {"type": "function", "function": function}


def _custom_tool(tool: Json, upstream: str) -> Json:
    """A free-form tool as a function of one string; a grammar can only be described to the model."""
    description = tool.get("description") if isinstance(tool.get("description"), str) else ""
    form = tool.get("format") if isinstance(tool.get("format"), dict) else {}
    if form.get("type") == "grammar" and isinstance(form.get("definition"), str):
        syntax = form.get("syntax") or "grammar"
        rule = f"The `{CUSTOM_INPUT}` argument is the raw input text and must match this {syntax} grammar:\n"
        description = JOIN.join(t for t in (description, rule + form["definition"]) if t)
    function: Json = {"name": upstream}
    if description:
        function["description"] = description
    function["parameters"] = custom_parameters()
    return {"type": "function", "function": function}


def custom_parameters() -> Json:
    """The parameters of the function a custom tool becomes (a new object each time: callers may edit)."""
    return {"type": "object", "properties": {CUSTOM_INPUT: {"type": "string"}}, "required": [CUSTOM_INPUT]}


def _tool_fields(tools: list[_Tool], choice: Any, parallel: Any, force_auto: bool) -> Json:
    """`tools`, `tool_choice` and `parallel_tool_calls`; the last two only with a tool (OpenAI rejects
    them otherwise). A forced choice becomes "auto" for Kimi with thinking on, or when its tool is gone."""
    mode: Any = choice
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        allowed = [t for t in choice.get("tools") or () if isinstance(t, dict)]
        tools = [t for t in tools if any(_allows(a, t.spec) for a in allowed)]
        mode = choice.get("mode") if choice.get("mode") in ("auto", "required") else "auto"
    if not tools:
        return {}
    out: Json = {"tools": [t.chat for t in tools]}
    mapped = _tool_choice(mode, tools, force_auto)
    if mapped is not None:
        out["tool_choice"] = mapped
    if isinstance(parallel, bool):
        out["parallel_tool_calls"] = parallel
    return out


def _allows(entry: Json, spec: ToolSpec) -> bool:
    if entry.get("type") == "namespace":
        return spec.namespace is not None and entry.get("name") == spec.namespace
    return (
        entry.get("type") == spec.kind and entry.get("name") == spec.name and entry.get("namespace") == spec.namespace
    )


def _tool_choice(choice: Any, tools: list[_Tool], force_auto: bool) -> str | Json | None:
    if choice in ("none", "auto"):
        return choice
    if choice == "required":
        return "auto" if force_auto else "required"
    if not isinstance(choice, dict):
        return None
    wanted = next((t for t in tools if _allows(choice, t.spec)), None)
    if force_auto or wanted is None:  # forcing a hosted or unknown tool: let the model choose
        return "auto"
    return {"type": "function", "function": {"name": wanted.chat["function"]["name"]}}


# --- messages -------------------------------------------------------------------------------------


@dataclass
class _History:
    """Chat messages built item by item, with what waits for a later message."""

    plan: _Plan
    table: ToolTable
    messages: list[Json] = field(default_factory=list)
    reasoning: list[tuple[str, str | None]] = field(default_factory=list)  # (text, signature) for the next assistant message
    images: list[Json] = field(default_factory=list)  # from tool outputs, for the next user message

    def add(self, message: Json) -> None:
        """Append a user or system message. Images moved out of tool outputs go first (into it, when it
        is a user message); pending reasoning belonged to an assistant message that never came."""
        if self.images and message["role"] == "user":
            message = {"role": "user", "content": self.images + _as_parts(message["content"])}
            self.images = []
        self.flush_images()
        self.reasoning = []
        self.messages.append(message)

    def assistant(self, *, new: bool) -> Json:
        """The assistant message to fill: the open one (a run of calls joins the text just before it)
        or a new one. Pending reasoning goes onto it."""
        if new or self.images or not self.messages or self.messages[-1]["role"] != "assistant":
            self.flush_images()
            self.messages.append({"role": "assistant", "content": None})
        message = self.messages[-1]
        if self.reasoning and self.plan.replay_reasoning:
            message["reasoning_content"] = JOIN.join(
                t for t in (message.get("reasoning_content"), *(text for text, _ in self.reasoning)) if t
            )
        if self.plan.signed_thinking:
            # Only blocks with Anthropic's own signature: it refuses any other (Chat -> Messages keeps these).
            blocks = [{"type": "thinking", "thinking": text, "signature": signature}
                      for text, signature in self.reasoning if signature]  # fmt: skip
            if blocks:
                message["thinking_blocks"] = message.get("thinking_blocks", []) + blocks
        self.reasoning = []
        return message

    def flush_images(self) -> None:
        if self.images:
            self.messages.append({"role": "user", "content": self.images})
            self.images = []


def _messages(instructions: Any, items: list[Any], plan: _Plan, table: ToolTable) -> list[Json]:
    history = _History(plan, table)
    if isinstance(instructions, str) and instructions:
        history.add({"role": "system", "content": instructions})
    for i, item in enumerate(items):
        if isinstance(item, dict):
            _add_item(history, item, i)
    history.flush_images()
    messages = history.messages
    if plan.replay_reasoning:
        # DeepSeek and Kimi reject a tool-call turn without reasoning (e.g. history from another model).
        for message in messages:
            if message.get("tool_calls") and not message.get("reasoning_content"):
                message["reasoning_content"] = REASONING_PLACEHOLDER
    return _paired(messages)


def _add_item(history: _History, item: Json, index: int) -> None:
    kind = item.get("type")
    if kind == "message" or (kind is None and isinstance(item.get("role"), str)):
        _add_message(history, item)
    elif kind in _CALLS:
        history.assistant(new=False).setdefault("tool_calls", []).append(_tool_call(item, history.table))
    elif kind in _OUTPUTS:
        history.messages.append(_tool_message(item, history))
    elif kind == "reasoning":
        sealed = _sealed_reasoning(item, index)
        if sealed is not None and sealed[0]:
            history.reasoning.append(sealed)
    elif kind != "additional_tools":  # its tools are already in the tool list
        _log.debug("responses: dropped input[%d] of type %r", index, kind)


def _add_message(history: _History, item: Json) -> None:
    role, content, plan = item.get("role"), item.get("content"), history.plan
    if role == "user":
        parts = _user_parts(content, plan)
        if parts:
            history.add({"role": "user", "content": _collapsed(parts)})
    elif role in ("system", "developer"):
        text = _plain_text(content)
        if text:
            history.add({"role": "system" if role == "system" else plan.developer_role, "content": text})
    elif role == "assistant":
        text = _plain_text(content)
        if text:
            history.assistant(new=True)["content"] = text
    else:
        _log.debug("responses: dropped a message with role %r", role)


def _as_parts(content: str | list[Json]) -> list[Json]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _collapsed(parts: list[Json]) -> str | list[Json]:
    """Plain text when every part is text (what every upstream accepts), else the parts."""
    if all(p["type"] == "text" for p in parts):
        return JOIN.join(p["text"] for p in parts)
    return parts


def _content_parts(content: Any) -> list[Json]:
    if isinstance(content, str):
        return [{"type": "input_text", "text": content}]
    return [p for p in content if isinstance(p, dict)] if isinstance(content, list) else []


def _part_text(part: Json) -> str | None:
    """The text of a text-like part (None for images, files and unknown parts)."""
    kind = part.get("type")
    if kind in _TEXT_PARTS:
        return str(part.get("text") or "")
    if kind == "refusal":
        return str(part.get("refusal") or "")
    return None


def _plain_text(content: Any) -> str:
    """System and assistant content as one string (Chat takes only text there)."""
    texts = []
    for part in _content_parts(content):
        text = _part_text(part)
        if text is None and part.get("type") == "input_image":
            text = IMAGE_NOT_USER
        elif text is None and part.get("type") == "input_file":
            text = _file_text(part, False)
        texts.append(text or "")
    return JOIN.join(t for t in texts if t)


def _user_parts(content: Any, plan: _Plan) -> list[Json]:
    parts: list[Json] = []
    for part in _content_parts(content):
        text = _part_text(part)
        if text is not None:
            parts += [{"type": "text", "text": text}] if text else []
        elif part.get("type") == "input_image":
            parts.append(_image_part(part, plan.text_only))
        elif part.get("type") == "input_file":
            parts.append(_file_part(part, plan.file_parts))
        elif part.get("type") == "input_audio":
            parts.append({"type": "text", "text": "[audio omitted: this model cannot hear audio]"})
    return parts


def _image_url(part: Json) -> str:
    url = part.get("image_url")
    url = url.get("url") if isinstance(url, dict) else url
    return url if isinstance(url, str) else ""


def _image_part(part: Json, text_only: bool) -> Json:
    url = _image_url(part)
    if text_only:
        return {"type": "text", "text": IMAGE_PLACEHOLDER}
    if not url:  # a `file_id` image lives in OpenAI's file store, out of reach
        return {"type": "text", "text": "[image omitted: only image URLs and data URLs are supported]"}
    image: Json = {"url": url}
    detail = part.get("detail")
    if isinstance(part.get("image_url"), dict):
        detail = detail or part["image_url"].get("detail")
    if detail in _DETAILS:
        image["detail"] = detail
    return {"type": "image_url", "image_url": image}


def _file_part(part: Json, file_parts: bool) -> Json:
    """A Chat `file` part where the upstream reads them, else the file's text or a placeholder."""
    if file_parts and (isinstance(part.get("file_data"), str) or isinstance(part.get("file_id"), str)):
        file = {k: part[k] for k in ("file_data", "file_id", "filename") if isinstance(part.get(k), str)}
        return {"type": "file", "file": file}
    return {"type": "text", "text": _file_text(part, True)}


def _file_text(part: Json, readable: bool) -> str:
    """A plain-text file's text (titled with its name), or a placeholder naming the file."""
    name = part.get("filename") if isinstance(part.get("filename"), str) else ""
    text = _decoded_text(part.get("file_data")) if readable else None
    if text:
        return JOIN.join(t for t in (name, text) if t)
    label = name or part.get("file_id") or part.get("file_url")
    return (
        f"[file {label} omitted: this model cannot read this file]"
        if label
        else "[file omitted: this model cannot read this file]"
    )


def _decoded_text(data: Any) -> str | None:
    """The text of a `data:text/...;base64,` URL."""
    if not isinstance(data, str) or not data.startswith("data:text/"):
        return None
    head, _, payload = data.partition(",")
    if not head.endswith(";base64"):
        return None
    try:
        return base64.b64decode(payload).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def _tool_call(item: Json, table: ToolTable) -> Json:
    """A Chat tool call for a `function_call` / `custom_tool_call` item, named as the tool is upstream."""
    custom = item.get("type") == "custom_tool_call"
    name = str(item.get("name") or "")
    namespace = item.get("namespace") if isinstance(item.get("namespace"), str) else None
    if custom:
        arguments = json.dumps({CUSTOM_INPUT: str(item.get("input") or "")}, ensure_ascii=False)
    else:
        arguments = item.get("arguments") if isinstance(item.get("arguments"), str) else ""
        arguments = arguments if arguments.strip() else "{}"  # upstreams parse it as JSON
    return {
        "id": str(item.get("call_id") or ""),
        "type": "function",
        "function": {
            "name": _history_name(table, "custom" if custom else "function", name, namespace),
            "arguments": arguments,
        },
    }


def _history_name(table: ToolTable, kind: str, name: str, namespace: str | None) -> str:
    """The upstream name of a tool seen in history; one no longer offered is registered as its kind."""
    if any(s.name == name and s.namespace == namespace for s in table.by_upstream.values()):
        return table.upstream_name(name, namespace)
    return table.add(ToolSpec("custom" if kind == "custom" else "function", name, namespace))


def _tool_message(item: Json, history: _History) -> Json:
    """A `tool` message for an output item (a string, or an array of parts joined as text)."""
    output = item.get("output")
    if isinstance(output, str):
        text = output
    elif isinstance(output, list):
        text = JOIN.join(t for t in (_output_text(p, history) for p in output if isinstance(p, dict)) if t)
    else:
        text = "" if output is None else json.dumps(output, ensure_ascii=False)
    return {"role": "tool", "tool_call_id": str(item.get("call_id") or ""), "content": text or EMPTY_TOOL_RESULT}


def _output_text(part: Json, history: _History) -> str:
    """One part of a tool output as text. Chat tool messages carry text only, so a readable image moves
    to the user message after the tool run and leaves a marker."""
    text = _part_text(part)
    if text is not None:
        return text
    if part.get("type") == "input_file":
        return _file_text(part, True)
    if part.get("type") != "input_image":
        return ""
    image = _image_part(part, history.plan.text_only)
    if image["type"] == "text":
        return image["text"]
    history.images.append(image)
    return IMAGE_MOVED


def _sealed_reasoning(item: Json, index: int) -> tuple[str, str | None] | None:
    """The reasoning text (and Anthropic signature) sealed in a gateway-minted `encrypted_content`;
    None for anything else.

    A token with the gateway's prefix that does not verify was altered or forged: refused rather than
    dropped, so a client cannot plant reasoning the upstream would take as the model's own.
    """
    token = item.get("encrypted_content")
    if not is_sealed_reasoning(token):
        return None  # absent, null, or another server's blob: only that server can read it
    sealed = open_reasoning(token)
    if sealed is None:
        raise ResponsesInputError(
            "reasoning item's encrypted_content failed verification", f"input[{index}].encrypted_content"
        )
    return sealed


def _paired(messages: list[Json]) -> list[Json]:
    """Each assistant tool-call message directly followed by one `tool` message per call, in call order.

    Chat upstreams reject a call without a result, a result without a call, and anything between an
    assistant's calls and their results; so results move up to their call, a missing one gets a
    placeholder and an orphan is dropped.
    """
    results: dict[str, Json] = {}
    for message in messages:
        if message["role"] == "tool":
            results.setdefault(message["tool_call_id"], message)
    out: list[Json] = []
    for message in messages:
        if message["role"] == "tool":
            continue
        out.append(message)
        for call in message.get("tool_calls") or ():
            result = results.pop(call["id"], None)
            out.append(result or {"role": "tool", "tool_call_id": call["id"], "content": MISSING_TOOL_RESULT})
    for call_id in results:
        _log.debug("responses: dropped the output of call %r, which has no call in the input", call_id)
    return out


# --- shape checks ---------------------------------------------------------------------------------

_MAX_PROBLEMS = 10
# The string fields each item type needs (outputs also need an `output`: a string or an array).
_ITEM_STRINGS = {
    "function_call": ("call_id", "name", "arguments"),
    "custom_tool_call": ("call_id", "name", "input"),
    "function_call_output": ("call_id",),
    "custom_tool_call_output": ("call_id",),
}


def check_responses_request(body: object) -> list[str]:
    """Problems with a Responses request body as `path: message` strings (empty list: acceptable).

    Only what the translation relies on is checked; unknown fields are accepted.
    """
    if not isinstance(body, dict):
        return [f"request body: expected a JSON object, got {_kind(body)}"]
    problems: list[str] = []
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        problems.append(f"model: expected a non-empty string, got {_kind(model)}")
    problems += _check_input(body)
    stream, instructions = body.get("stream"), body.get("instructions")
    if stream is not None and not isinstance(stream, bool):
        problems.append(f"stream: expected a boolean, got {_kind(stream)}")
    if instructions is not None and not isinstance(instructions, str):
        problems.append(f"instructions: expected a string, got {_kind(instructions)}")
    previous = body.get("previous_response_id")
    if previous is not None and (not isinstance(previous, str) or not previous.strip()):
        problems.append(f"previous_response_id: expected a response id string, got {_kind(previous)}")
    limit = body.get("max_output_tokens")
    if limit is not None and (not _is_int(limit) or limit < 1):
        problems.append(f"max_output_tokens: expected a positive integer, got {limit!r}")
    problems += _check_tools(body.get("tools"))
    return problems[:_MAX_PROBLEMS]


def _check_input(body: Json) -> list[str]:
    value = body.get("input")
    if value is None:
        # Without a store the input is the whole conversation; only a stored one could stand in for it.
        return [] if isinstance(body.get("previous_response_id"), str) else ["input: required"]
    if isinstance(value, str):
        return []
    if not isinstance(value, list):
        return [f"input: expected a string or an array of items, got {_kind(value)}"]
    problems: list[str] = []
    for i, item in enumerate(value):
        problems += _check_item(item, f"input[{i}]")
        if len(problems) >= _MAX_PROBLEMS:
            break
    return problems


def _check_item(item: Any, path: str) -> list[str]:
    if not isinstance(item, dict):
        return [f"{path}: expected an object, got {_kind(item)}"]
    problems: list[str] = []
    kind, role = item.get("type"), item.get("role")
    if kind is not None and not isinstance(kind, str):
        problems.append(f"{path}.type: expected a string, got {_kind(kind)}")
    if role is not None and not isinstance(role, str):
        problems.append(f"{path}.role: expected a string, got {_kind(role)}")
    if kind is None and role is None:
        problems.append(f"{path}: expected a 'type' or a 'role'")
    if kind == "message" or (kind is None and isinstance(role, str)):
        problems += _check_content(item.get("content"), f"{path}.content")
    required = _ITEM_STRINGS.get(kind, ()) if isinstance(kind, str) else ()
    for name in required:
        if not isinstance(item.get(name), str):
            problems.append(f"{path}.{name}: expected a string, got {_kind(item.get(name))}")
    if kind in _OUTPUTS and not isinstance(item.get("output"), (str, list)):
        problems.append(f"{path}.output: expected a string or an array, got {_kind(item.get('output'))}")
    return problems


def _check_content(content: Any, path: str) -> list[str]:
    if isinstance(content, str):
        return []
    if not isinstance(content, list):
        return [f"{path}: expected a string or an array of content parts, got {_kind(content)}"]
    return [
        f"{path}[{j}]: expected an object with a string 'type'"
        for j, part in enumerate(content)
        if not isinstance(part, dict) or not isinstance(part.get("type"), str)
    ]


def _check_tools(tools: Any) -> list[str]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        return [f"tools: expected an array, got {_kind(tools)}"]
    problems: list[str] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            problems.append(f"tools[{i}]: expected an object with a string 'type'")
        elif tool["type"] in ("function", "custom", "namespace") and not isinstance(tool.get("name"), str):
            problems.append(f"tools[{i}].name: expected a string, got {_kind(tool.get('name'))}")
    return problems
